-- relaygram schema: personal messages, send metadata, button answers.
-- `content`: the rendered content of a message rendered for its own recipient (per-target
-- `data`, or a template that reads `link`), sent instead of its request's shared content.
-- NULL for the usual message that shares its request's content.
ALTER TABLE messages ADD COLUMN content TEXT;
-- `message_requests.metadata`: the app's own JSON object for a send (`metadata`), given back
-- with a reply to one of its messages and with a press of one of its buttons.
ALTER TABLE message_requests ADD COLUMN metadata TEXT;
-- `callback_data.answer`: what a press of the button answers (`{"text", "show_alert"}`,
-- JSON), or NULL for a silent answer.
ALTER TABLE callback_data ADD COLUMN answer TEXT;
-- `message_requests.skipped`: the targets of a send that reached nobody (JSON, as the 202
-- answered them), so an answer rebuilt after a crash still reports them.
ALTER TABLE message_requests ADD COLUMN skipped TEXT;
