//! Bot commands as Telegram users type them: `/name`, `/name args`, `/name@bot_username args`.

/// A command addressed to this bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lower-cased name without the slash (`start`).
    pub name: String,
    /// Everything after the command, trimmed (`lk_abc` in `/start lk_abc`).
    pub args: String,
}

/// What a message's text means for command routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a command: ordinary text.
    Text,
    /// A command for another bot (`/help@other_bot`): ignored.
    OtherBot,
    /// A command for us.
    Command(Command),
}

/// Longest command name Telegram accepts in messages.
const MAX_NAME: usize = 64;

/// Parses `text` for the bot called `bot_username` (without `@`, compared case-insensitively).
pub fn parse(text: &str, bot_username: &str) -> Parsed {
    let Some(rest) = text.strip_prefix('/') else {
        return Parsed::Text;
    };
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let (head, args) = rest.split_at(end);
    let (name, target) = match head.split_once('@') {
        Some((n, t)) => (n, Some(t)),
        None => (head, None),
    };
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Parsed::Text;
    }
    if target.is_some_and(|t| !t.eq_ignore_ascii_case(bot_username)) {
        return Parsed::OtherBot;
    }
    Parsed::Command(Command {
        name: name.to_ascii_lowercase(),
        args: args.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, args: &str) -> Parsed {
        Parsed::Command(Command {
            name: name.into(),
            args: args.into(),
        })
    }

    #[test]
    fn plain_and_with_arguments() {
        assert_eq!(parse("/start", "shop_bot"), cmd("start", ""));
        assert_eq!(parse("/start lk_abc", "shop_bot"), cmd("start", "lk_abc"));
        assert_eq!(parse("/link  tok  \n", "shop_bot"), cmd("link", "tok"));
        assert_eq!(parse("/Help", "shop_bot"), cmd("help", ""));
    }

    #[test]
    fn addressed_commands() {
        assert_eq!(parse("/help@Shop_Bot", "shop_bot"), cmd("help", ""));
        assert_eq!(parse("/help@other_bot now", "shop_bot"), Parsed::OtherBot);
    }

    #[test]
    fn not_commands() {
        assert_eq!(parse("hello", "shop_bot"), Parsed::Text);
        assert_eq!(parse("/", "shop_bot"), Parsed::Text);
        assert_eq!(parse("/ start", "shop_bot"), Parsed::Text);
        assert_eq!(parse("/usr/bin", "shop_bot"), Parsed::Text);
        assert_eq!(parse(" /start", "shop_bot"), Parsed::Text);
    }
}
