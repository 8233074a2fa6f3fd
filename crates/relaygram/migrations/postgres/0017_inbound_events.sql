-- The update types a bot asks Telegram for (a JSON array of type names); NULL = every type
-- Telegram sends, including those it sends only when asked (chat_member, message_reaction,
-- message_reaction_count).
ALTER TABLE bots ADD COLUMN allowed_updates TEXT;
