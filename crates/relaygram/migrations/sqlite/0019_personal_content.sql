-- relaygram schema: personal messages.
-- `content`: the rendered content of a message rendered for its own recipient (per-target
-- `data`, or a template that reads `link`), sent instead of its request's shared content.
-- NULL for the usual message that shares its request's content.
ALTER TABLE messages ADD COLUMN content TEXT;
