//! Custom bot commands per bot, managed by the app and synced to Telegram's command menu.
