//! Telegram text formatting for the sandbox.
//!
//! The parsers (`parse_mode` "HTML", "MarkdownV2" and legacy "Markdown") and the entity detection
//! follow TDLib's `MessageEntity.cpp`, which the real Bot API server runs, down to its error wording
//! and byte offsets: a bot under test should get the same `can't parse entities` errors from the
//! sandbox as from Telegram. Entity offsets and lengths are in UTF-16 code units, as in the Bot API.
//!
//! `render_html` goes the other way, for the sandbox's web chat page: text plus entities to escaped,
//! well-formed HTML.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A Telegram MessageEntity. Offsets/lengths are in UTF-16 code units, as Telegram counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: usize,
    pub length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_emoji_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Value>,
}

impl Entity {
    fn plain(kind: &str, offset: usize, length: usize) -> Self {
        Entity {
            kind: kind.to_owned(),
            offset,
            length,
            url: None,
            language: None,
            custom_emoji_id: None,
            user: None,
        }
    }
}

/// Length in UTF-16 code units (Telegram's length for the 4096/1024 limits).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

// ---------------------------------------------------------------------------------------------
// Entity kinds shared by the parsers and the detector
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mention,
    Hashtag,
    Cashtag,
    BotCommand,
    Url,
    Email,
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre,
    PreCode,
    TextUrl,
    MentionName,
    CustomEmoji,
    BlockQuote,
    ExpandableBlockQuote,
}

impl Kind {
    /// TDLib's order for entities with the same range: the lower value is the outer entity.
    fn priority(self) -> u8 {
        match self {
            Kind::BlockQuote | Kind::ExpandableBlockQuote => 0,
            Kind::PreCode => 10,
            Kind::Pre => 11,
            Kind::Code => 20,
            Kind::TextUrl | Kind::MentionName => 49,
            Kind::Mention
            | Kind::Hashtag
            | Kind::Cashtag
            | Kind::BotCommand
            | Kind::Url
            | Kind::Email => 50,
            Kind::Bold => 90,
            Kind::Italic => 91,
            Kind::Underline => 92,
            Kind::Strikethrough => 93,
            Kind::Spoiler => 94,
            Kind::CustomEmoji => 99,
        }
    }

    /// The name TDLib prints in "Can't find end of ... entity" errors.
    fn tdlib_name(self) -> &'static str {
        match self {
            Kind::Mention => "Mention",
            Kind::Hashtag => "Hashtag",
            Kind::Cashtag => "Cashtag",
            Kind::BotCommand => "BotCommand",
            Kind::Url => "Url",
            Kind::Email => "EmailAddress",
            Kind::Bold => "Bold",
            Kind::Italic => "Italic",
            Kind::Underline => "Underline",
            Kind::Strikethrough => "Strikethrough",
            Kind::Spoiler => "Spoiler",
            Kind::Code => "Code",
            Kind::Pre => "Pre",
            Kind::PreCode => "PreCode",
            Kind::TextUrl => "TextUrl",
            Kind::MentionName => "MentionName",
            Kind::CustomEmoji => "CustomEmoji",
            Kind::BlockQuote => "BlockQuote",
            Kind::ExpandableBlockQuote => "ExpandableBlockQuote",
        }
    }

    /// The Bot API's `type` for the entity.
    fn api_name(self) -> &'static str {
        match self {
            Kind::Mention => "mention",
            Kind::Hashtag => "hashtag",
            Kind::Cashtag => "cashtag",
            Kind::BotCommand => "bot_command",
            Kind::Url => "url",
            Kind::Email => "email",
            Kind::Bold => "bold",
            Kind::Italic => "italic",
            Kind::Underline => "underline",
            Kind::Strikethrough => "strikethrough",
            Kind::Spoiler => "spoiler",
            Kind::Code => "code",
            Kind::Pre | Kind::PreCode => "pre",
            Kind::TextUrl => "text_link",
            Kind::MentionName => "text_mention",
            Kind::CustomEmoji => "custom_emoji",
            Kind::BlockQuote => "blockquote",
            Kind::ExpandableBlockQuote => "expandable_blockquote",
        }
    }
}

/// An entity while parsing; `arg` is the URL, language, custom emoji id or user id, by kind.
struct Raw {
    kind: Kind,
    offset: usize,
    length: usize,
    arg: String,
}

impl Raw {
    fn new(kind: Kind, offset: usize, length: usize, arg: String) -> Self {
        Raw {
            kind,
            offset,
            length,
            arg,
        }
    }
}

/// Drops empty entities and sorts like TDLib: by offset, then longer (outer) first, then priority.
fn finish(mut raws: Vec<Raw>) -> Vec<Entity> {
    raws.retain(|r| r.length > 0);
    raws.sort_by(|a, b| {
        a.offset
            .cmp(&b.offset)
            .then(b.length.cmp(&a.length))
            .then(a.kind.priority().cmp(&b.kind.priority()))
    });
    raws.into_iter()
        .map(|r| {
            let mut e = Entity::plain(r.kind.api_name(), r.offset, r.length);
            match r.kind {
                Kind::PreCode => e.language = Some(r.arg),
                Kind::TextUrl => e.url = Some(r.arg),
                Kind::CustomEmoji => e.custom_emoji_id = Some(r.arg),
                Kind::MentionName => {
                    e.user = Some(json!({ "id": r.arg.parse::<i64>().unwrap_or(0) }))
                }
                _ => {}
            }
            e
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Byte-level helpers: TDLib parses a NUL-terminated C string, and several of its checks rely on
// reading a 0 just past the end, so `at` returns 0 there.
// ---------------------------------------------------------------------------------------------

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// TDLib's `is_space`, which counts NUL (the end of the text) as a space.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b | 0x0c)
}

/// UTF-16 code units contributed by a UTF-8 byte: 0 for continuation bytes, 2 for 4-byte leads.
fn utf16_units(c: u8) -> usize {
    if c & 0xC0 == 0x80 {
        0
    } else if c >= 0xF0 {
        2
    } else {
        1
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn push_code_point(out: &mut Vec<u8>, code: u32) {
    // Surrogates can't be stored in Rust strings; callers report them as TDLib does.
    let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
}

fn into_string(out: Vec<u8>) -> String {
    // Only whole UTF-8 sequences of valid input are copied, so this never loses anything.
    String::from_utf8(out).unwrap_or_else(|e| lossy(e.as_bytes()))
}

fn reserved_error(c: u8) -> String {
    format!(
        "Character '{}' is reserved and must be escaped with the preceding '\\'",
        c as char
    )
}

// ---------------------------------------------------------------------------------------------
// Links: TDLib's LinkManager::check_link / get_link_user_id, as applied to text_link URLs
// ---------------------------------------------------------------------------------------------

struct HttpUrl {
    https: bool,
    userinfo: String,
    host: String,
    is_ipv6: bool,
    specified_port: u32,
    query: String,
}

impl HttpUrl {
    fn url(&self) -> String {
        let mut s = String::from(if self.https { "https://" } else { "http://" });
        if !self.userinfo.is_empty() {
            s.push_str(&self.userinfo);
            s.push('@');
        }
        s.push_str(&self.host);
        if self.specified_port > 0 {
            s.push(':');
            s.push_str(&self.specified_port.to_string());
        }
        s.push_str(&self.query);
        s
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// TDLib's `parse_url`: `[http(s)://][userinfo@]host[:port][/query]`, normalised.
fn parse_url(url: &str) -> Option<HttpUrl> {
    let proto_end = url.find(|c| ":/?#@[]".contains(c)).unwrap_or(url.len());
    let (https, rest) = if url[proto_end..].starts_with("://") {
        match url[..proto_end].to_ascii_lowercase().as_str() {
            "http" => (false, &url[proto_end + 3..]),
            "https" => (true, &url[proto_end + 3..]),
            _ => return None,
        }
    } else {
        (false, url)
    };
    let uhp_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let uhp = &rest[..uhp_end];

    // The port is after the last ':' that isn't inside userinfo or an IPv6 literal.
    let ub = uhp.as_bytes();
    let mut colon = ub.len().saturating_sub(1);
    while colon > 0 && !matches!(ub[colon], b':' | b']' | b'@') {
        colon -= 1;
    }
    let mut port = 0u32;
    let userinfo_host = if colon > 0 && ub[colon] == b':' {
        let digits = uhp[colon + 1..].trim_start_matches('0');
        let digits = if digits.is_empty() && colon + 1 < uhp.len() {
            "0"
        } else {
            digits
        };
        port = match digits.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => p,
            _ => return None,
        };
        &uhp[..colon]
    } else {
        uhp
    };
    let (userinfo, host) = match userinfo_host.rfind('@') {
        Some(p) => (&userinfo_host[..p], &userinfo_host[p + 1..]),
        None => ("", userinfo_host),
    };
    let is_ipv6 = host.len() >= 2 && host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || host == "." {
        return None;
    }

    let query = rest[uhp_end..].trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let mut query_str = String::new();
    if !query.starts_with('/') {
        query_str.push('/');
    }
    for c in query.chars() {
        if (c as u32) <= 0x20 {
            query_str.push_str(&format!("%{:02X}", c as u32));
        } else {
            query_str.push(c);
        }
    }

    let host = host.to_ascii_lowercase();
    let hb = host.as_bytes();
    let mut i = 0;
    while i < hb.len() {
        let c = hb[i];
        if is_ipv6 {
            let ok = i == 0
                || i + 1 == hb.len()
                || c == b':'
                || c == b'.'
                || c.is_ascii_digit()
                || (b'a'..=b'f').contains(&c);
            if !ok {
                return None;
            }
        } else if c == b'%' {
            // Percent-encoded symbols are allowed by RFC 3986.
            if !(at(hb, i + 1).is_ascii_hexdigit() && at(hb, i + 2).is_ascii_hexdigit()) {
                return None;
            }
            i += 2;
        } else if !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c >= 0x80
            || b".-_!$,~*'();&+=".contains(&c))
        {
            return None;
        }
        i += 1;
    }

    Some(HttpUrl {
        https,
        userinfo: userinfo.to_owned(),
        host,
        is_ipv6,
        specified_port: port,
        query: query_str,
    })
}

/// TDLib's `get_checked_link`: the normalised URL of a text_link, or None if Telegram drops it.
fn checked_link(link: &str) -> Option<String> {
    let (scheme, rest) = if starts_with_ci(link, "tg:") {
        (Some("tg"), &link[3..])
    } else if starts_with_ci(link, "ton:") {
        (Some("ton"), &link[4..])
    } else if starts_with_ci(link, "tonsite:") {
        (Some("tonsite"), &link[8..])
    } else {
        (None, link)
    };
    let rest = match scheme {
        Some(_) => rest.strip_prefix("//").unwrap_or(rest),
        None => rest,
    };
    let url = parse_url(rest)?;
    if let Some(scheme) = scheme {
        if starts_with_ci(rest, "http://")
            || url.https
            || !url.userinfo.is_empty()
            || url.specified_port != 0
            || url.is_ipv6
        {
            return None;
        }
        let mut query = url.query.as_str();
        if query.len() > 1 && query.as_bytes()[1] == b'?' {
            query = &query[1..];
        }
        let host_ok = url.host.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || c == b'-'
                || c == b'_'
                || (scheme == "tonsite" && c == b'.')
        });
        if !host_ok {
            return None;
        }
        return Some(format!("{scheme}://{}{query}", url.host));
    }
    if !url.host.contains('.') && !url.is_ipv6 {
        return None;
    }
    Some(url.url())
}

/// The `id` parameter of a `tg://<host>?id=N` link, if the link has that host.
fn tg_link_id(url: &str, host: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("tg:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.strip_prefix(host)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_prefix('?')?;
    let rest = rest.split('#').next().unwrap_or("");
    rest.split('&').find_map(|param| {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        (key == "id").then(|| value.to_owned())
    })
}

/// TDLib's `get_link_user_id`: `tg://user?id=123` makes a text_mention instead of a text_link.
fn link_user_id(url: &str) -> Option<i64> {
    // TDLib's UserId is valid for 1..2^40.
    let id = tg_link_id(url, "user")?.parse::<i64>().ok()?;
    (id > 0 && id < (1 << 40)).then_some(id)
}

/// TDLib's `get_link_custom_emoji_id` for MarkdownV2's `![👍](tg://emoji?id=...)`.
fn link_custom_emoji_id(url: &str) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("tg:") else {
        return Err("Custom emoji URL must have scheme tg".into());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if !rest.starts_with("emoji") {
        return Err("Custom emoji URL must have host \"emoji\"".into());
    }
    match tg_link_id(url, "emoji") {
        None => Err("Custom emoji URL must have an emoji identifier".into()),
        Some(id) => valid_custom_emoji_id(&id),
    }
}

fn valid_custom_emoji_id(id: &str) -> Result<String, String> {
    match id.parse::<i64>() {
        Ok(n) if n != 0 && !id.starts_with('+') => Ok(n.to_string()),
        _ => Err("Invalid custom emoji identifier specified".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// parse_mode "HTML"
// ---------------------------------------------------------------------------------------------

const HTML_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
];

/// TDLib's `decode_html_entity` at `b[pos] == '&'`: the code point and the position after it.
/// Only `&lt; &gt; &amp; &quot;` and numeric references count, with or without the `;`.
fn decode_html_entity(b: &[u8], pos: usize) -> Option<(u32, usize)> {
    let mut end = pos + 1;
    let mut code: u32 = 0;
    if at(b, pos + 1) == b'#' {
        end += 1;
        if at(b, pos + 2) == b'x' {
            end += 1;
            while let Some(d) = (at(b, end) as char).to_digit(16) {
                code = code.wrapping_mul(16).wrapping_add(d);
                end += 1;
            }
        } else {
            while at(b, end).is_ascii_digit() {
                code = code
                    .wrapping_mul(10)
                    .wrapping_add(u32::from(at(b, end) - b'0'));
                end += 1;
            }
        }
        if code == 0 || code >= 0x10FFFF || end - pos >= 10 {
            return None;
        }
    } else {
        while at(b, end).is_ascii_alphabetic() {
            end += 1;
        }
        code = match &b[pos + 1..end] {
            b"lt" => u32::from(b'<'),
            b"gt" => u32::from(b'>'),
            b"amp" => u32::from(b'&'),
            b"quot" => u32::from(b'"'),
            _ => return None,
        };
    }
    let next = if at(b, end) == b';' { end + 1 } else { end };
    Some((code, next))
}

struct OpenTag {
    tag: String,
    arg: String,
    offset: usize,
    out_pos: usize,
}

/// Parse Telegram-HTML (parse_mode "HTML") into plain text + entities, exactly like Telegram.
/// Err holds the text after "Bad Request: can't parse entities: ", e.g.
/// `Unsupported start tag "foo" at byte offset 0`, `Can't find end tag corresponding to start tag "b"`,
/// `Unexpected end tag at byte offset 5`, `Unmatched end tag at byte offset 10, expected "</i>", found "</b>"`.
pub fn parse_html(input: &str) -> Result<(String, Vec<Entity>), String> {
    let b = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut utf16 = 0usize;
    let mut raws: Vec<Raw> = Vec::new();
    let mut stack: Vec<OpenTag> = Vec::new();
    // TDLib reports a decoded lone surrogate only after the whole text parsed.
    let mut decoded_surrogate = false;

    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'&'
            && let Some((code, next)) = decode_html_entity(b, i)
        {
            utf16 += if code > 0xFFFF { 2 } else { 1 };
            decoded_surrogate |= (0xD800..=0xDFFF).contains(&code);
            push_code_point(&mut out, code);
            i = next;
            continue;
        }
        if c != b'<' {
            utf16 += utf16_units(c);
            out.push(c);
            i += 1;
            continue;
        }

        let begin = i;
        i += 1;
        if at(b, i) != b'/' {
            let (tag, arg) = parse_start_tag(b, begin, &mut i)?;
            stack.push(OpenTag {
                tag,
                arg,
                offset: utf16,
                out_pos: out.len(),
            });
            i += 1; // the '>'
            continue;
        }

        // An end tag.
        let Some(open) = stack.pop() else {
            return Err(format!("Unexpected end tag at byte offset {begin}"));
        };
        while !is_space(at(b, i)) && at(b, i) != b'>' {
            i += 1;
        }
        let end_tag = lossy(&b[begin + 2..i]).to_ascii_lowercase();
        while is_space(at(b, i)) && at(b, i) != 0 {
            i += 1;
        }
        if at(b, i) != b'>' {
            return Err(format!("Unclosed end tag at byte offset {begin}"));
        }
        if !end_tag.is_empty() && end_tag != open.tag {
            return Err(format!(
                "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{end_tag}>\"",
                open.tag
            ));
        }
        if utf16 > open.offset {
            let length = utf16 - open.offset;
            close_html_entity(&mut raws, open, length, &out)?;
        }
        i += 1; // the '>'
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.tag
        ));
    }
    // A language only counts for <code> inside <pre>.
    for r in raws.iter_mut().filter(|r| r.kind == Kind::Code) {
        r.arg.clear();
    }
    if decoded_surrogate {
        return Err(
            "Text contains invalid Unicode characters after decoding HTML entities, \
                    check for unmatched surrogate code units"
                .into(),
        );
    }
    Ok((into_string(out), finish(raws)))
}

/// Reads a start tag whose '<' is at `begin`; `i` is just past the '<' and ends on the '>'.
/// Returns the lower-cased tag name and its argument (href, language, spoiler class, emoji id,
/// or "1" for an expandable blockquote).
fn parse_start_tag(b: &[u8], begin: usize, i: &mut usize) -> Result<(String, String), String> {
    while !is_space(at(b, *i)) && at(b, *i) != b'>' {
        *i += 1;
    }
    if at(b, *i) == 0 {
        return Err(format!("Unclosed start tag at byte offset {begin}"));
    }
    let tag = lossy(&b[begin + 1..*i]).to_ascii_lowercase();
    if !HTML_TAGS.contains(&tag.as_str()) {
        return Err(format!(
            "Unsupported start tag \"{tag}\" at byte offset {begin}"
        ));
    }

    let mut arg = String::new();
    while at(b, *i) != b'>' {
        while at(b, *i) != 0 && is_space(at(b, *i)) {
            *i += 1;
        }
        if at(b, *i) == b'>' {
            break;
        }
        let name_begin = *i;
        while !is_space(at(b, *i)) && !matches!(at(b, *i), b'=' | b'>' | b'/' | b'"' | b'\'') {
            *i += 1;
        }
        let name = &b[name_begin..*i];
        if name.is_empty() {
            return Err(format!(
                "Empty attribute name in the tag \"{tag}\" at byte offset {begin}"
            ));
        }
        while at(b, *i) != 0 && is_space(at(b, *i)) {
            *i += 1;
        }
        if at(b, *i) != b'=' {
            // An attribute without a value; only `<blockquote expandable>` means anything.
            if at(b, *i) == 0 {
                return Err(format!(
                    "Unclosed start tag \"{tag}\" at byte offset {begin}"
                ));
            }
            if tag == "blockquote" && name == b"expandable" {
                arg = "1".into();
            }
            continue;
        }
        *i += 1;
        while at(b, *i) != 0 && is_space(at(b, *i)) {
            *i += 1;
        }
        if at(b, *i) == 0 {
            return Err(format!(
                "Unclosed start tag \"{tag}\" at byte offset {begin}"
            ));
        }

        let value = if at(b, *i) != b'\'' && at(b, *i) != b'"' {
            // An unquoted name token: letters, digits, periods and hyphens, case-insensitive.
            let token_begin = *i;
            while at(b, *i).is_ascii_alphanumeric() || matches!(at(b, *i), b'.' | b'-') {
                *i += 1;
            }
            if !is_space(at(b, *i)) && at(b, *i) != b'>' {
                return Err(format!(
                    "Unexpected end of name token at byte offset {token_begin}"
                ));
            }
            lossy(&b[token_begin..*i]).to_ascii_lowercase()
        } else {
            // A quoted string, in which entities are decoded too.
            let quote = b[*i];
            *i += 1;
            let mut value = Vec::new();
            while at(b, *i) != quote && at(b, *i) != 0 {
                if b[*i] == b'&'
                    && let Some((code, next)) = decode_html_entity(b, *i)
                {
                    push_code_point(&mut value, code);
                    *i = next;
                    continue;
                }
                value.push(b[*i]);
                *i += 1;
            }
            if at(b, *i) == quote {
                *i += 1;
            }
            lossy(&value)
        };
        if at(b, *i) == 0 {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }

        match (tag.as_str(), name) {
            ("a", b"href") | ("tg-emoji", b"emoji-id") => arg = value,
            ("code", b"class") if value.starts_with("language-") => arg = value[9..].to_owned(),
            ("span", b"class") if value.starts_with("tg-") => arg = value[3..].to_owned(),
            ("blockquote", b"expandable") => arg = "1".into(),
            _ => {}
        }
    }

    if tag == "span" && arg != "spoiler" {
        return Err(format!(
            "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
        ));
    }
    Ok((tag, arg))
}

/// Turns a closed, non-empty HTML element into its entity.
fn close_html_entity(
    raws: &mut Vec<Raw>,
    open: OpenTag,
    length: usize,
    out: &[u8],
) -> Result<(), String> {
    let offset = open.offset;
    let same_range = |r: &Raw| r.offset == offset && r.length == length;
    let kind = match open.tag.as_str() {
        "b" | "strong" => Kind::Bold,
        "i" | "em" => Kind::Italic,
        "u" | "ins" => Kind::Underline,
        "s" | "strike" | "del" => Kind::Strikethrough,
        "tg-spoiler" | "span" => Kind::Spoiler,
        "tg-emoji" => {
            let id = valid_custom_emoji_id(&open.arg)?;
            raws.push(Raw::new(Kind::CustomEmoji, offset, length, id));
            return Ok(());
        }
        "a" => {
            // Without href, the link's own text is the URL.
            let url = if open.arg.is_empty() {
                lossy(&out[open.out_pos..])
            } else {
                open.arg
            };
            if let Some(id) = link_user_id(&url) {
                raws.push(Raw::new(Kind::MentionName, offset, length, id.to_string()));
            } else if let Some(url) = checked_link(&url) {
                raws.push(Raw::new(Kind::TextUrl, offset, length, url));
            }
            return Ok(());
        }
        "pre" => {
            // <code class="language-x"><pre>..</pre></code>: the code closed first.
            if let Some(last) = raws.last_mut()
                && last.kind == Kind::Code
                && same_range(last)
                && !last.arg.is_empty()
            {
                last.kind = Kind::PreCode;
                return Ok(());
            }
            Kind::Pre
        }
        "code" => {
            // <pre><code class="language-x">..</code></pre>: one pre entity with a language.
            if let Some(last) = raws.last_mut()
                && last.kind == Kind::Pre
                && same_range(last)
                && !open.arg.is_empty()
            {
                last.kind = Kind::PreCode;
                last.arg = open.arg;
                return Ok(());
            }
            raws.push(Raw::new(Kind::Code, offset, length, open.arg));
            return Ok(());
        }
        "blockquote" if !open.arg.is_empty() => Kind::ExpandableBlockQuote,
        _ => Kind::BlockQuote,
    };
    raws.push(Raw::new(kind, offset, length, String::new()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// parse_mode "MarkdownV2"
// ---------------------------------------------------------------------------------------------

struct OpenMd {
    kind: Kind,
    arg: String,
    offset: usize,
    byte_offset: usize,
    out_pos: usize,
}

fn cant_find_end(open: &OpenMd) -> String {
    format!(
        "Can't find end of {} entity at byte offset {}",
        open.kind.tdlib_name(),
        open.byte_offset
    )
}

/// Reads the `(...)` part of a link or custom emoji; `i` is on the '(' and ends on the ')'.
/// Inside it, `\` escapes any ASCII character.
fn read_md_url(b: &[u8], i: &mut usize) -> Option<String> {
    *i += 1;
    let mut url = Vec::new();
    while *i < b.len() && b[*i] != b')' {
        if b[*i] == b'\\' && (1..=126).contains(&at(b, *i + 1)) {
            url.push(b[*i + 1]);
            *i += 2;
            continue;
        }
        url.push(b[*i]);
        *i += 1;
    }
    (at(b, *i) == b')').then(|| lossy(&url))
}

/// Same for parse_mode "MarkdownV2" (reserved chars _*[]()~`>#+-=|{}.! must be escaped with \ outside entities;
/// error e.g. `Character '.' is reserved and must be escaped with the preceding '\'`,
/// `Can't find end of Bold entity at byte offset 0`). Support *bold* _italic_ __underline__ ~strike~ ||spoiler||
/// [text](url) `code` ```lang\npre``` and >blockquote lines.
///
/// Also `![👍](tg://emoji?id=...)` custom emoji and `**>` ... `||` expandable blockquotes.
pub fn parse_markdown_v2(input: &str) -> Result<(String, Vec<Entity>), String> {
    let b = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut utf16 = 0usize;
    let mut raws: Vec<Raw> = Vec::new();
    let mut stack: Vec<OpenMd> = Vec::new();
    let mut have_blockquote = false;
    // '>' starts a blockquote only at the start of a line (reserved characters don't count).
    let mut can_start_blockquote = true;

    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = at(b, i + 1);
        if c == b'\\' && (1..=126).contains(&next) {
            i += 1;
            utf16 += 1;
            out.push(next);
            if next != b'\r' {
                can_start_blockquote = next == b'\n';
            }
            i += 1;
            continue;
        }

        let top = stack.last().map(|o| o.kind);
        let in_code = matches!(top, Some(Kind::Code | Kind::Pre | Kind::PreCode));
        let reserved: &[u8] = if in_code {
            b"`"
        } else {
            b"_*[]()~`>#+-=|{}.!\n"
        };
        if !reserved.contains(&c) {
            let units = utf16_units(c);
            if units > 0 && c != b'\r' {
                can_start_blockquote = false;
            }
            utf16 += units;
            out.push(c);
            i += 1;
            continue;
        }

        let is_end = match top {
            None => false,
            Some(_) if have_blockquote && c == b'\n' && next != b'>' => true,
            Some(kind) => match kind {
                Kind::Bold => c == b'*',
                Kind::Italic => c == b'_' && next != b'_',
                Kind::Code => c == b'`',
                Kind::Pre | Kind::PreCode => c == b'`' && next == b'`' && at(b, i + 2) == b'`',
                Kind::TextUrl | Kind::CustomEmoji => c == b']',
                Kind::Underline => c == b'_' && next == b'_',
                Kind::Strikethrough => c == b'~',
                Kind::Spoiler => c == b'|' && next == b'|',
                _ => false,
            },
        };

        if !is_end {
            // The start of an entity (or a newline / blockquote continuation).
            let byte_offset = i;
            let mut arg = String::new();
            let kind = match c {
                b'_' if next == b'_' => {
                    i += 1;
                    Kind::Underline
                }
                b'_' => Kind::Italic,
                b'*' => Kind::Bold,
                b'~' => Kind::Strikethrough,
                b'|' if next == b'|' => {
                    i += 1;
                    Kind::Spoiler
                }
                b'[' => Kind::TextUrl,
                b'`' if next == b'`' && at(b, i + 2) == b'`' => {
                    i += 3;
                    let mut kind = Kind::Pre;
                    let mut lang_end = i;
                    while !is_space(at(b, lang_end)) && at(b, lang_end) != b'`' {
                        lang_end += 1;
                    }
                    if i != lang_end && lang_end < b.len() && b[lang_end] != b'`' {
                        kind = Kind::PreCode;
                        arg = lossy(&b[i..lang_end]);
                        i = lang_end;
                    }
                    // One newline right after the opening fence isn't part of the text.
                    if matches!(at(b, i), b'\n' | b'\r') {
                        if matches!(at(b, i + 1), b'\n' | b'\r') && at(b, i) != at(b, i + 1) {
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    i -= 1;
                    kind
                }
                b'`' => Kind::Code,
                b'!' if next == b'[' => {
                    i += 1;
                    Kind::CustomEmoji
                }
                b'\n' => {
                    utf16 += 1;
                    out.push(b'\n');
                    can_start_blockquote = true;
                    i += 1;
                    continue;
                }
                b'>' if can_start_blockquote => {
                    i += 1;
                    if have_blockquote {
                        continue;
                    }
                    have_blockquote = true;
                    stack.push(OpenMd {
                        kind: Kind::BlockQuote,
                        arg,
                        offset: utf16,
                        byte_offset,
                        out_pos: out.len(),
                    });
                    continue;
                }
                _ => return Err(reserved_error(c)),
            };
            stack.push(OpenMd {
                kind,
                arg,
                offset: utf16,
                byte_offset,
                out_pos: out.len(),
            });
            i += 1;
            continue;
        }

        // The end of the innermost entity.
        let Some(mut open) = stack.pop() else {
            unreachable!("is_end needs an open entity")
        };
        let mut kind = open.kind;
        if c == b'\n' && kind != Kind::BlockQuote {
            // `||` right before the newline ends an expandable blockquote; anything else open is
            // unterminated at the end of the quote.
            let ends_expandable = kind == Kind::Spoiler
                && (open.byte_offset + 2 == i
                    || (open.byte_offset + 3 == i && out.last() == Some(&b'\r')));
            if !ends_expandable {
                return Err(cant_find_end(&open));
            }
            match stack.pop() {
                Some(quote) if quote.kind == Kind::BlockQuote => open = quote,
                Some(other) => return Err(cant_find_end(&other)),
                None => return Err(cant_find_end(&open)),
            }
            kind = Kind::ExpandableBlockQuote;
        }
        let mut skip = utf16 == open.offset;
        let mut arg = std::mem::take(&mut open.arg);
        match kind {
            Kind::Underline | Kind::Spoiler => i += 1,
            Kind::Pre | Kind::PreCode => i += 2,
            Kind::TextUrl => {
                let url = if next != b'(' {
                    // [text] alone: the text is the URL.
                    lossy(&out[open.out_pos..])
                } else {
                    i += 1;
                    let url_begin = i + 1;
                    read_md_url(b, &mut i).ok_or_else(|| {
                        format!("Can't find end of a URL at byte offset {url_begin}")
                    })?
                };
                if let Some(id) = link_user_id(&url) {
                    kind = Kind::MentionName;
                    arg = id.to_string();
                } else if let Some(url) = checked_link(&url) {
                    arg = url;
                } else {
                    skip = true;
                }
            }
            Kind::CustomEmoji => {
                if next != b'(' {
                    return Err("Custom emoji entity must contain a tg://emoji URL".into());
                }
                i += 1;
                let url_begin = i + 1;
                let url = read_md_url(b, &mut i).ok_or_else(|| {
                    format!("Can't find end of a custom emoji URL at byte offset {url_begin}")
                })?;
                arg = link_custom_emoji_id(&url)?;
            }
            Kind::BlockQuote | Kind::ExpandableBlockQuote => {
                // The quote keeps its closing newline.
                have_blockquote = false;
                out.push(b'\n');
                can_start_blockquote = true;
                utf16 += 1;
                skip = false;
            }
            _ => {}
        }
        if !skip {
            raws.push(Raw::new(kind, open.offset, utf16 - open.offset, arg));
        }
        i += 1;
    }

    if have_blockquote {
        // A quote still open at the end of the text; a final `||` makes it expandable.
        let mut kind = Kind::BlockQuote;
        if let Some(open) = stack.last()
            && open.kind == Kind::Spoiler
            && open.byte_offset + 2 == b.len()
            && stack.len() > 1
        {
            stack.pop();
            kind = Kind::ExpandableBlockQuote;
        }
        if let Some(open) = stack.pop_if(|open| open.kind == Kind::BlockQuote) {
            raws.push(Raw::new(
                kind,
                open.offset,
                utf16 - open.offset,
                String::new(),
            ));
        }
    }
    if let Some(open) = stack.last() {
        return Err(cant_find_end(open));
    }
    Ok((into_string(out), finish(raws)))
}

// ---------------------------------------------------------------------------------------------
// parse_mode "Markdown" (legacy)
// ---------------------------------------------------------------------------------------------

/// Legacy "Markdown": *bold* _italic_ `code` ```pre``` [text](url); error `Can't find end of the entity starting at byte offset N`.
///
/// Entities don't nest; inside one, everything up to its closing character is literal text.
pub fn parse_markdown(input: &str) -> Result<(String, Vec<Entity>), String> {
    let b = input.as_bytes();
    let size = b.len();
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let mut utf16 = 0usize;
    let mut raws: Vec<Raw> = Vec::new();

    let mut i = 0;
    while i < size {
        let c = b[i];
        let next = at(b, i + 1);
        if c == b'\\' && matches!(next, b'_' | b'*' | b'`' | b'[') {
            out.push(next);
            utf16 += 1;
            i += 2;
            continue;
        }
        if !matches!(c, b'_' | b'*' | b'`' | b'[') {
            utf16 += utf16_units(c);
            out.push(c);
            i += 1;
            continue;
        }

        let begin = i;
        let end_char = if c == b'[' { b']' } else { c };
        let mut is_pre = false;
        let mut language = String::new();
        i += 1;
        if c == b'`' && at(b, i) == b'`' && at(b, i + 1) == b'`' {
            i += 2;
            is_pre = true;
            let mut lang_end = i;
            while !is_space(at(b, lang_end)) && at(b, lang_end) != b'`' {
                lang_end += 1;
            }
            if i != lang_end && lang_end < size && b[lang_end] != b'`' {
                language = lossy(&b[i..lang_end]);
                i = lang_end;
            }
            if matches!(at(b, i), b'\n' | b'\r') {
                if matches!(at(b, i + 1), b'\n' | b'\r') && at(b, i) != at(b, i + 1) {
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }

        let offset = utf16;
        let content_begin = i;
        while i < size
            && (b[i] != end_char || (is_pre && !(at(b, i + 1) == b'`' && at(b, i + 2) == b'`')))
        {
            utf16 += utf16_units(b[i]);
            out.push(b[i]);
            i += 1;
        }
        if i == size {
            return Err(format!(
                "Can't find end of the entity starting at byte offset {begin}"
            ));
        }

        if utf16 != offset {
            let length = utf16 - offset;
            match c {
                b'_' => raws.push(Raw::new(Kind::Italic, offset, length, String::new())),
                b'*' => raws.push(Raw::new(Kind::Bold, offset, length, String::new())),
                b'[' => {
                    let url = if at(b, i + 1) != b'(' {
                        lossy(&b[content_begin..i])
                    } else {
                        // Up to ')' or the end of the text; no error for a missing ')'.
                        i += 2;
                        let url_begin = i;
                        while i < size && b[i] != b')' {
                            i += 1;
                        }
                        lossy(&b[url_begin..i])
                    };
                    if let Some(id) = link_user_id(&url) {
                        raws.push(Raw::new(Kind::MentionName, offset, length, id.to_string()));
                    } else if let Some(url) = checked_link(&url) {
                        raws.push(Raw::new(Kind::TextUrl, offset, length, url));
                    }
                }
                _ if is_pre && !language.is_empty() => {
                    raws.push(Raw::new(Kind::PreCode, offset, length, language))
                }
                _ if is_pre => raws.push(Raw::new(Kind::Pre, offset, length, String::new())),
                _ => raws.push(Raw::new(Kind::Code, offset, length, String::new())),
            }
        }
        if is_pre {
            i += 2;
        }
        i += 1;
    }
    Ok((into_string(out), finish(raws)))
}

// ---------------------------------------------------------------------------------------------
// Entities Telegram detects in user messages (TDLib's find_entities)
// ---------------------------------------------------------------------------------------------

/// Top-level domains accepted in URLs written without a protocol (`example.com`). TDLib knows
/// every IANA TLD; this is the common subset: generic ones plus all country codes.
#[rustfmt::skip]
const COMMON_TLDS: &[&str] = &[
    // generic
    "academy", "aero", "agency", "ai", "app", "art", "asia", "bar", "bet", "bid", "bio", "biz",
    "blog", "bot", "business", "buzz", "cafe", "capital", "care", "cash", "cat", "center", "chat",
    "city", "click", "cloud", "club", "codes", "com", "company", "coop", "dev", "design",
    "digital", "directory", "edu", "email", "energy", "events", "expert", "express", "fans",
    "finance", "fit", "fun", "fyi", "game", "games", "gay", "gift", "global", "gmbh", "gold",
    "gov", "group", "guide", "guru", "health", "help", "host", "house", "icu", "inc", "info",
    "ink", "int", "jobs", "land", "law", "life", "link", "live", "llc", "love", "ltd", "market",
    "media", "mil", "mobi", "moe", "money", "museum", "music", "name", "net", "network", "new",
    "news", "ninja", "one", "online", "org", "page", "photo", "photos", "pics", "plus", "porn",
    "pro", "pub", "red", "rocks", "run", "sex", "shop", "show", "site", "social", "software",
    "solutions", "space", "store", "stream", "studio", "style", "systems", "team", "tech", "tel",
    "today", "tools", "top", "travel", "tube", "video", "vip", "wiki", "win", "work", "works",
    "world", "wtf", "xxx", "xyz", "zone",
    // Cyrillic
    "бел", "дети", "ком", "москва", "онлайн", "орг", "рус", "рф", "сайт", "срб", "укр", "қаз",
    // country codes
    "ac", "ad", "ae", "af", "ag", "al", "am", "ao", "aq", "ar", "as", "at", "au", "aw", "ax", "az",
    "ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bm", "bn", "bo", "br", "bs", "bt", "bw",
    "by", "bz", "ca", "cc", "cd", "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn", "co", "cr", "cu",
    "cv", "cw", "cx", "cy", "cz", "de", "dj", "dk", "dm", "do", "dz", "ec", "ee", "eg", "er", "es",
    "et", "eu", "fi", "fj", "fk", "fm", "fo", "fr", "ga", "gd", "ge", "gf", "gg", "gh", "gi", "gl",
    "gm", "gn", "gp", "gq", "gr", "gs", "gt", "gu", "gw", "gy", "hk", "hm", "hn", "hr", "ht", "hu",
    "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm", "jo", "jp", "ke", "kg",
    "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc", "li", "lk", "lr", "ls",
    "lt", "lu", "lv", "ly", "ma", "mc", "md", "me", "mg", "mh", "mk", "ml", "mm", "mn", "mo", "mp",
    "mq", "mr", "ms", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na", "nc", "ne", "nf", "ng", "ni",
    "nl", "no", "np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg", "ph", "pk", "pl", "pm", "pn",
    "pr", "ps", "pt", "pw", "py", "qa", "re", "ro", "rs", "ru", "rw", "sa", "sb", "sc", "sd", "se",
    "sg", "sh", "si", "sk", "sl", "sm", "sn", "so", "sr", "ss", "st", "su", "sv", "sx", "sy", "sz",
    "tc", "td", "tf", "tg", "th", "tj", "tk", "tl", "tm", "tn", "to", "tr", "tt", "tv", "tw", "tz",
    "ua", "ug", "uk", "us", "uy", "uz", "va", "vc", "ve", "vg", "vi", "vn", "vu", "wf", "ws", "ye",
    "yt", "za", "zm", "zw",
];

fn is_common_tld(tld: &str) -> bool {
    if tld.bytes().all(|c| c.is_ascii_lowercase()) {
        return COMMON_TLDS.contains(&tld);
    }
    // "Com" in "Hello.Com" reads as a sentence, not a domain: reject a capital first letter only.
    let lower = tld.to_lowercase();
    if lower != tld && lower.chars().skip(1).eq(tld.chars().skip(1)) {
        return false;
    }
    COMMON_TLDS.contains(&lower.as_str())
}

/// TDLib's word characters: letters, numbers and '_'.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_ascii_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_hashtag_letter(c: char) -> bool {
    c == '_'
        || c == '\u{200c}'
        || c == '\u{b7}'
        || ('\u{d80}'..='\u{dff}').contains(&c)
        || c.is_alphanumeric()
}

/// Separators end URLs; general punctuation does too, except joiners and dashes.
fn is_url_unicode_symbol(c: char) -> bool {
    if ('\u{2000}'..='\u{206f}').contains(&c) {
        return c == '\u{200c}' || c == '\u{200d}' || ('\u{2010}'..='\u{2015}').contains(&c);
    }
    !(c.is_whitespace() || c.is_control())
}

fn is_url_path_symbol(c: char) -> bool {
    !matches!(c, '\n' | '<' | '>' | '"' | '«' | '»') && is_url_unicode_symbol(c)
}

fn is_domain_symbol(c: char) -> bool {
    if (c as u32) < 0xC0 {
        return c == '.' || c == '~' || c == '-' || is_ascii_word_char(c);
    }
    is_url_unicode_symbol(c)
}

fn is_user_data_symbol(c: char) -> bool {
    !matches!(
        c,
        '\n' | '/'
            | '['
            | ']'
            | '{'
            | '}'
            | '('
            | ')'
            | '\''
            | '`'
            | '<'
            | '>'
            | '"'
            | '@'
            | '«'
            | '»'
    ) && is_url_unicode_symbol(c)
}

fn is_protocol_symbol(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '+' || c == '-';
    }
    // Non-ASCII letters are taken so that the protocol is then rejected as a whole.
    is_url_unicode_symbol(c)
}

fn is_bad_path_end(c: char) -> bool {
    ".:;,('?!`".contains(c)
}

/// The text as chars, with the byte offset of each char (plus one past the end).
struct Chars {
    chars: Vec<char>,
    bytes: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Self {
        let mut chars = Vec::new();
        let mut bytes = Vec::new();
        for (i, c) in text.char_indices() {
            chars.push(c);
            bytes.push(i);
        }
        bytes.push(text.len());
        Chars { chars, bytes }
    }
}

/// `@username`: 2-32 of [A-Za-z0-9_] after a non-word character; usernames under 4 characters
/// only for Telegram's inline bots @gif, @vid and @pic.
fn find_mentions(ch: &[char], found: &mut Vec<(Kind, usize, usize)>) {
    let n = ch.len();
    let mut k = 0;
    while k < n {
        if ch[k] != '@' || (k > 0 && is_word_char(ch[k - 1])) {
            k += 1;
            continue;
        }
        let start = k + 1;
        let mut end = start;
        while end < n && is_ascii_word_char(ch[end]) {
            end += 1;
        }
        k = end.max(k + 1);
        let len = end - start;
        if !(2..=32).contains(&len) || (end < n && is_word_char(ch[end])) {
            continue;
        }
        let name: String = ch[start..end]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        if len >= 4 || matches!(name.as_str(), "gif" | "vid" | "pic") {
            found.push((Kind::Mention, start - 1, end));
        }
    }
}

/// `/command` (1-64 of [A-Za-z0-9_]) with an optional `@botname` (3-32), standing alone.
fn find_bot_commands(ch: &[char], found: &mut Vec<(Kind, usize, usize)>) {
    let n = ch.len();
    let not_edge = |c: char| is_word_char(c) || matches!(c, '/' | '<' | '>');
    let mut k = 0;
    while k < n {
        if ch[k] != '/' || (k > 0 && not_edge(ch[k - 1])) {
            k += 1;
            continue;
        }
        let start = k;
        let mut end = k + 1;
        while end < n && is_ascii_word_char(ch[end]) {
            end += 1;
        }
        k = end.max(k + 1);
        if !(1..=64).contains(&(end - start - 1)) {
            continue;
        }
        if end < n && ch[end] == '@' {
            let bot_start = end + 1;
            let mut bot_end = bot_start;
            while bot_end < n && is_ascii_word_char(ch[bot_end]) {
                bot_end += 1;
            }
            k = bot_end;
            if !(3..=32).contains(&(bot_end - bot_start)) {
                continue;
            }
            end = bot_end;
        }
        if end < n && not_edge(ch[end]) {
            continue;
        }
        found.push((Kind::BotCommand, start, end));
    }
}

/// `#tag`: up to 256 letters, digits and '_' with at least one letter, not followed by '#'.
fn find_hashtags(ch: &[char], found: &mut Vec<(Kind, usize, usize)>) {
    let n = ch.len();
    let mut k = 0;
    while k < n {
        if ch[k] != '#' || (k > 0 && is_hashtag_letter(ch[k - 1])) {
            k += 1;
            continue;
        }
        let start = k;
        let mut end = k + 1;
        let mut was_letter = false;
        while end < n && is_hashtag_letter(ch[end]) {
            if end - start <= 256 {
                was_letter |= ch[end].is_alphabetic();
            }
            end += 1;
        }
        k = end.max(k + 1);
        if end == start + 1 || (end < n && ch[end] == '#') || !was_letter {
            continue;
        }
        found.push((Kind::Hashtag, start, end.min(start + 257)));
    }
}

/// `$USD`: 1-8 capital letters (or `$1INCH`) standing alone.
fn find_cashtags(ch: &[char], found: &mut Vec<(Kind, usize, usize)>) {
    let n = ch.len();
    let blocks = |c: char| is_hashtag_letter(c) || c == '$';
    for k in 0..n {
        if ch[k] != '$' || (k > 0 && blocks(ch[k - 1])) {
            continue;
        }
        let start = k + 1;
        let mut end = start;
        if ch[start..].starts_with(&['1', 'I', 'N', 'C', 'H']) {
            end += 5;
        } else {
            while end < n && ch[end].is_ascii_uppercase() {
                end += 1;
            }
        }
        if (1..=8).contains(&(end - start)) && !(end < n && blocks(ch[end])) {
            found.push((Kind::Cashtag, k, end));
        }
    }
}

/// `tg://...` and `ton://...` links.
fn find_tg_urls(ch: &[char], found: &mut Vec<(Kind, usize, usize)>) {
    let n = ch.len();
    let mut p = 0;
    while n - p > 5 {
        let Some(colon) = (p..n).find(|&k| ch[k] == ':') else {
            break;
        };
        let lower = |k: usize| ch[k].to_ascii_lowercase();
        let mut begin = None;
        if colon + 2 < n && ch[colon + 1] == '/' && ch[colon + 2] == '/' {
            if colon >= 2 && lower(colon - 2) == 't' && lower(colon - 1) == 'g' {
                begin = Some(colon - 2);
            } else if colon >= 3
                && lower(colon - 3) == 't'
                && lower(colon - 2) == 'o'
                && lower(colon - 1) == 'n'
            {
                begin = Some(colon - 3);
            }
        }
        let Some(begin) = begin else {
            p = colon + 1;
            continue;
        };
        p = colon + 3;
        let domain_begin = p;
        while p < n && p - domain_begin != 253 && (is_ascii_word_char(ch[p]) || ch[p] == '-') {
            p += 1;
        }
        if p == domain_begin {
            continue;
        }
        if p < n && matches!(ch[p], '/' | '?' | '#') {
            let mut path_end = p + 1;
            while path_end < n && is_url_path_symbol(ch[path_end]) {
                path_end += 1;
            }
            while path_end > p + 1 && is_bad_path_end(ch[path_end - 1]) {
                path_end -= 1;
            }
            if ch[p] == '/' || path_end > p + 1 {
                p = path_end;
            }
        }
        found.push((Kind::Url, begin, p));
    }
}

/// Candidate URLs and e-mail addresses around each '.', as char ranges (TDLib's match_urls).
fn match_urls(s: &Chars) -> Vec<(usize, usize)> {
    let ch = &s.chars;
    let n = ch.len();
    let mut result = Vec::new();
    let mut start = 0;
    while let Some(dot) = (start..n).find(|&k| ch[k] == '.') {
        if dot + 1 == n {
            break;
        }
        if ch[dot + 1] == ' ' {
            start = dot + 2;
            continue;
        }

        let mut domain_begin = dot;
        while domain_begin > start && is_domain_symbol(ch[domain_begin - 1]) {
            domain_begin -= 1;
        }
        let mut has_at = false;
        let mut domain_end = dot;
        while domain_end < n {
            if ch[domain_end] == '@' {
                has_at = true;
            } else if !is_domain_symbol(ch[domain_end]) {
                break;
            }
            domain_end += 1;
        }
        if has_at {
            while domain_begin > start && is_user_data_symbol(ch[domain_begin - 1]) {
                domain_begin -= 1;
            }
        }

        let mut end = domain_end;
        if end < n && ch[end] == ':' {
            let mut port_end = end + 1;
            while port_end < n && ch[port_end].is_ascii_digit() {
                port_end += 1;
            }
            let mut port_begin = end + 1;
            while port_begin < port_end && ch[port_begin] == '0' {
                port_begin += 1;
            }
            let port: String = ch[port_begin..port_end].iter().collect();
            if port_begin != port_end
                && port.len() <= 5
                && port.parse::<u32>().unwrap_or(0) <= 65535
            {
                end = port_end;
            }
        }
        if end < n && matches!(ch[end], '/' | '?' | '#') {
            let mut path_end = end + 1;
            while path_end < n && is_url_path_symbol(ch[path_end]) {
                path_end += 1;
            }
            while path_end > end + 1 && is_bad_path_end(ch[path_end - 1]) {
                path_end -= 1;
            }
            if ch[end] == '/' || path_end > end + 1 {
                end = path_end;
            }
        }
        while end > dot + 1 && ch[end - 1] == '.' {
            end -= 1;
        }

        let mut is_bad = false;
        let mut begin = domain_begin;
        if begin != start && ch[begin - 1] == '@' {
            if has_at {
                is_bad = true;
            }
            let mut user_begin = begin - 1;
            while user_begin > start && is_user_data_symbol(ch[user_begin - 1]) {
                user_begin -= 1;
            }
            if user_begin == begin - 1 {
                is_bad = true;
            }
            begin = user_begin;
        }
        if begin != start {
            let prefix_bytes = s.bytes[begin] - s.bytes[start];
            if prefix_bytes >= 6 && ch[begin - 3..begin] == [':', '/', '/'] {
                let mut proto_begin = begin - 3;
                while proto_begin > start && is_protocol_symbol(ch[proto_begin - 1]) {
                    proto_begin -= 1;
                }
                let proto = ch[proto_begin..begin - 3]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase();
                if proto.ends_with("http") && proto != "shttp" {
                    begin -= 7;
                } else if proto.ends_with("https") {
                    begin -= 8;
                } else if proto.ends_with("ftp") && proto != "tftp" && proto != "sftp" {
                    begin -= 6;
                } else {
                    is_bad = true;
                }
            } else {
                let c = ch[begin - 1];
                if is_word_char(c) || matches!(c, '/' | '#' | '@') {
                    is_bad = true;
                }
            }
        }

        if !is_bad {
            if end > dot + 1 {
                result.push((begin, end));
            }
            while end < n && ch[end] == '.' {
                end += 1;
            }
        } else {
            while ch[end - 1] != '.' {
                end -= 1;
            }
        }
        start = end.max(dot + 1);
    }
    result
}

/// TDLib's `is_email_address`.
fn is_email_address(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    let is_part_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut prev = 0;
    let mut user_parts = 0;
    for (i, c) in user.bytes().enumerate() {
        if c == b'.' || c == b'+' {
            if i - prev >= 27 {
                return false;
            }
            user_parts += 1;
            prev = i + 1;
        } else if !is_part_char(c) {
            return false;
        }
    }
    user_parts += 1;
    let last = user.len() - prev;
    if user_parts >= 12 || last == 0 || last >= 36 {
        return false;
    }

    let parts: Vec<&str> = domain.split('.').collect();
    if parts.len() <= 1 || parts.len() > 7 {
        return false;
    }
    let (tld, labels) = parts.split_last().unwrap_or((&"", &[]));
    if tld.len() <= 1 || tld.len() >= 9 || !tld.bytes().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    labels.iter().all(|p| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() < 31
            && b.iter().all(|&c| is_part_char(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    })
}

/// TDLib's `fix_url`: trims unbalanced brackets and trailing punctuation and validates the domain.
/// Returns the byte length of the URL to keep, or None if it isn't a URL after all.
fn fix_url(full: &str) -> Option<usize> {
    let head = full.as_bytes()[..full.len().min(8)].to_ascii_lowercase();
    let mut s = full;
    let mut has_protocol = false;
    if head.starts_with(b"http://") || head.starts_with(b"https://") || head.starts_with(b"ftp://")
    {
        let colon = full.find(':').unwrap_or(0);
        s = &full[colon + 3..];
        has_protocol = true;
    }
    let domain_end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let mut domain = &s[..domain_end];
    let path = &s.as_bytes()[domain_end..];
    if let Some(p) = domain.find('@') {
        domain = &domain[p + 1..];
    }
    if let Some(p) = domain.rfind(':') {
        domain = &domain[..p];
    }
    if domain.eq_ignore_ascii_case("teiegram.org") {
        return None;
    }

    // Cut the path at the first unbalanced closing bracket, then trailing punctuation.
    let mut balance = [0i32; 3];
    let mut path_pos = 0;
    while path_pos < path.len() {
        match path[path_pos] {
            b'(' => balance[0] += 1,
            b'[' => balance[1] += 1,
            b'{' => balance[2] += 1,
            b')' => balance[0] -= 1,
            b']' => balance[1] -= 1,
            b'}' => balance[2] -= 1,
            _ => {}
        }
        if balance.iter().any(|&x| x < 0) {
            break;
        }
        path_pos += 1;
    }
    while path_pos > 0 && is_bad_path_end(path[path_pos - 1] as char) {
        path_pos -= 1;
    }
    let keep = full.len() - (path.len() - path_pos);

    let d = domain.as_bytes();
    let mut prev = 0;
    let mut parts = 0;
    let mut has_non_digit = false;
    let mut is_ipv4 = true;
    for i in 0..=d.len() {
        if i == d.len() || d[i] == b'.' {
            let part = i - prev;
            if part == 0 || part >= 64 || d[i - 1] == b'-' {
                return None;
            }
            if is_ipv4 {
                let p = &d[prev..i];
                let over_255 = part == 3
                    && (p[0] >= b'3'
                        || (p[0] == b'2' && (p[1] >= b'6' || (p[1] == b'5' && p[2] >= b'6'))));
                if part > 3 || over_255 || (p[0] == b'0' && part >= 2) {
                    is_ipv4 = false;
                }
            }
            parts += 1;
            if i != d.len() {
                prev = i + 1;
            }
        } else if !d[i].is_ascii_digit() {
            is_ipv4 = false;
            has_non_digit = true;
        }
    }
    if parts == 1 {
        return None;
    }
    if is_ipv4 && parts == 4 {
        return Some(keep);
    }
    if !has_non_digit {
        return None;
    }
    let tld = &domain[prev..];
    if tld.chars().count() <= 1 {
        return None;
    }
    if let Some(puny) = tld.strip_prefix("xn--") {
        if puny.len() <= 1 || !puny.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
    } else if tld.contains(['_', '-']) || (!has_protocol && !is_common_tld(tld)) {
        return None;
    }
    // No '_' in the second-level domain either.
    let second_level = domain[..prev - 1].rsplit('.').next().unwrap_or("");
    if second_level.contains('_') {
        return None;
    }
    Some(keep)
}

/// URLs and e-mail addresses as char ranges.
fn find_urls(text: &str, s: &Chars, found: &mut Vec<(Kind, usize, usize)>) {
    for (begin, end) in match_urls(s) {
        let url = &text[s.bytes[begin]..s.bytes[end]];
        if is_email_address(url) {
            found.push((Kind::Email, begin, end));
        } else if url.starts_with("mailto:") && is_email_address(&url[7..]) {
            found.push((Kind::Email, begin + 7, end));
        } else if let Some(keep) = fix_url(url) {
            let end_byte = s.bytes[begin] + keep;
            let end = s.bytes.partition_point(|&b| b < end_byte);
            if end > begin {
                found.push((Kind::Url, begin, end));
            }
        }
    }
}

/// Auto-detected entities Telegram adds to *incoming user* messages: bot_command (`/start`, `/help@some_bot`
/// at word start; 1-32 chars of [A-Za-z0-9_] plus optional @username), mention (@username, 5-32 chars),
/// url (http(s)://... and bare domains like example.com/x), email, hashtag (#tag). Returns them sorted by offset.
///
/// As in TDLib: commands may be up to 64 characters, mentions 4+ (and @gif/@vid/@pic), cashtags
/// (`$USD`) are found too, and of overlapping matches only the first (longest) is kept.
pub fn detect_entities(text: &str) -> Vec<Entity> {
    let s = Chars::new(text);
    let mut found = Vec::new();
    find_mentions(&s.chars, &mut found);
    find_bot_commands(&s.chars, &mut found);
    find_hashtags(&s.chars, &mut found);
    find_cashtags(&s.chars, &mut found);
    find_tg_urls(&s.chars, &mut found);
    find_urls(text, &s, &mut found);

    // Char index -> UTF-16 offset.
    let mut units = Vec::with_capacity(s.chars.len() + 1);
    let mut u = 0;
    for c in &s.chars {
        units.push(u);
        u += c.len_utf16();
    }
    units.push(u);

    let mut raws: Vec<Raw> = found
        .into_iter()
        .map(|(kind, b, e)| Raw::new(kind, units[b], units[e] - units[b], String::new()))
        .collect();
    raws.retain(|r| r.length > 0);
    raws.sort_by(|a, b| {
        a.offset
            .cmp(&b.offset)
            .then(b.length.cmp(&a.length))
            .then(a.kind.priority().cmp(&b.kind.priority()))
    });
    // Detected entities never overlap: keep the first of any intersecting ones.
    let mut last_end = 0;
    raws.retain(|r| {
        let keep = r.offset >= last_end;
        if keep {
            last_end = r.offset + r.length;
        }
        keep
    });
    finish(raws)
}

// ---------------------------------------------------------------------------------------------
// HTML for the web chat view
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML; `newline` is what a '\n' becomes (`<br>` in text, an entity in attributes).
fn escape_into(s: &str, newline: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str(newline),
            _ => out.push(c),
        }
    }
}

fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, "&#10;", &mut out);
    out
}

/// An href for the page, only for schemes that can't run script.
fn safe_href(url: &str) -> Option<String> {
    let url = url.trim();
    let allowed = ["http://", "https://", "tg:", "mailto:"]
        .iter()
        .any(|scheme| starts_with_ci(url, scheme));
    allowed.then(|| escape_attr(url))
}

fn link_tags(href: Option<String>) -> Option<(String, String)> {
    let href = href?;
    Some((
        format!("<a href=\"{href}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">"),
        "</a>".into(),
    ))
}

/// Opening and closing markup for an entity over `covered` text, or None to show it as plain text.
fn entity_tags(e: &Entity, covered: &str) -> Option<(String, String)> {
    let simple = |open: &str, close: &str| Some((open.to_owned(), close.to_owned()));
    match e.kind.as_str() {
        "bold" => simple("<b>", "</b>"),
        "italic" => simple("<i>", "</i>"),
        "underline" => simple("<u>", "</u>"),
        "strikethrough" => simple("<s>", "</s>"),
        "code" => simple("<code>", "</code>"),
        "pre" => match e.language.as_deref().filter(|l| !l.is_empty()) {
            Some(lang) => Some((
                format!("<pre><code class=\"language-{}\">", escape_attr(lang)),
                "</code></pre>".into(),
            )),
            None => simple("<pre>", "</pre>"),
        },
        "blockquote" => simple("<blockquote>", "</blockquote>"),
        "expandable_blockquote" => simple("<blockquote class=\"expandable\">", "</blockquote>"),
        "spoiler" => simple("<span class=\"spoiler\">", "</span>"),
        "bot_command" => simple("<span class=\"cmd\">", "</span>"),
        "mention" | "hashtag" | "cashtag" => {
            Some((format!("<span class=\"{}\">", e.kind), "</span>".into()))
        }
        "text_link" => link_tags(e.url.as_deref().and_then(safe_href)),
        "url" => {
            let href = if covered.contains("://") {
                covered.to_owned()
            } else {
                format!("http://{covered}")
            };
            link_tags(safe_href(&href))
        }
        "email" => link_tags(safe_href(&format!("mailto:{covered}"))),
        "text_mention" => {
            let id = e.user.as_ref()?.get("id")?.as_i64()?;
            link_tags(safe_href(&format!("tg://user?id={id}")))
        }
        _ => None,
    }
}

/// Render text+entities to safe HTML for a web chat view (escape everything; b/i/u/s/code/pre/a[href, only http(s)/tg/mailto]
/// /blockquote/spoiler (<span class="spoiler">)/bot_command (<span class="cmd">) ; newlines as <br>). Nested and overlapping
/// entities must produce well-formed HTML (split tags as needed).
///
/// Also links url/email/text_mention entities and wraps mention/hashtag/cashtag in a `<span>`
/// classed by type. Offsets past the text are clamped; one inside a surrogate pair takes the
/// whole character.
pub fn render_html(text: &str, entities: &[Entity]) -> String {
    // UTF-16 offset of every char boundary, with its byte offset.
    let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(text.len() + 1);
    let mut u = 0;
    for (byte, c) in text.char_indices() {
        bounds.push((u, byte));
        u += c.len_utf16();
    }
    bounds.push((u, text.len()));
    let floor = |x: usize| bounds[bounds.partition_point(|&(b, _)| b <= x) - 1].1;
    let ceil = |x: usize| {
        bounds[bounds
            .partition_point(|&(b, _)| b < x)
            .min(bounds.len() - 1)]
        .1
    };

    struct Span {
        start: usize,
        end: usize,
        open: String,
        close: String,
        priority: u8,
    }
    let mut spans = Vec::new();
    for e in entities {
        let start = floor(e.offset);
        let end = ceil(e.offset.saturating_add(e.length));
        if start >= end {
            continue;
        }
        if let Some((open, close)) = entity_tags(e, &text[start..end]) {
            let priority = match e.kind.as_str() {
                "blockquote" | "expandable_blockquote" => 0,
                "pre" => 10,
                "code" => 20,
                "text_link" | "text_mention" => 49,
                "bold" => 90,
                "italic" => 91,
                "underline" => 92,
                "strikethrough" => 93,
                "spoiler" => 94,
                _ => 50,
            };
            spans.push(Span {
                start,
                end,
                open,
                close,
                priority,
            });
        }
    }

    let mut points: Vec<usize> = vec![0, text.len()];
    for s in &spans {
        points.push(s.start);
        points.push(s.end);
    }
    points.sort_unstable();
    points.dedup();

    // Tags are kept strictly nested: at each boundary, close from the top of the stack down to the
    // first span that ends there, then reopen what is still active, outermost (longest) first.
    let mut out = String::with_capacity(text.len() * 2);
    let mut stack: Vec<usize> = Vec::new();
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let active = |i: usize| spans[i].start <= a && spans[i].end > a;
        let keep = stack
            .iter()
            .position(|&i| !active(i))
            .unwrap_or(stack.len());
        while stack.len() > keep {
            if let Some(i) = stack.pop() {
                out.push_str(&spans[i].close);
            }
        }
        let mut opening: Vec<usize> = (0..spans.len())
            .filter(|&i| active(i) && !stack.contains(&i))
            .collect();
        opening.sort_by(|&x, &y| {
            spans[y]
                .end
                .cmp(&spans[x].end)
                .then(spans[x].priority.cmp(&spans[y].priority))
                .then(x.cmp(&y))
        });
        for i in opening {
            out.push_str(&spans[i].open);
            stack.push(i);
        }
        escape_into(&text[a..b], "<br>", &mut out);
    }
    while let Some(i) = stack.pop() {
        out.push_str(&spans[i].close);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "bold 0+4", followed by the entity's url, language, custom emoji id or user id.
    fn describe(entities: &[Entity]) -> Vec<String> {
        entities
            .iter()
            .map(|e| {
                let mut s = format!("{} {}+{}", e.kind, e.offset, e.length);
                for extra in [&e.url, &e.language, &e.custom_emoji_id]
                    .into_iter()
                    .flatten()
                {
                    s.push(' ');
                    s.push_str(extra);
                }
                if let Some(user) = &e.user {
                    s.push_str(&format!(" user {}", user["id"]));
                }
                s
            })
            .collect()
    }

    fn html(input: &str) -> (String, Vec<String>) {
        let (text, entities) = parse_html(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (text, describe(&entities))
    }

    fn md2(input: &str) -> (String, Vec<String>) {
        let (text, entities) =
            parse_markdown_v2(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (text, describe(&entities))
    }

    fn md(input: &str) -> (String, Vec<String>) {
        let (text, entities) = parse_markdown(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (text, describe(&entities))
    }

    fn detect(text: &str) -> Vec<String> {
        describe(&detect_entities(text))
    }

    // --- HTML ---------------------------------------------------------------------------------

    #[test]
    fn html_nested_entities() {
        assert_eq!(
            html("<b>bold <i>both</i></b> <u>u</u><s>s</s>"),
            (
                "bold both us".into(),
                vec![
                    "bold 0+9".into(),
                    "italic 5+4".into(),
                    "underline 10+1".into(),
                    "strikethrough 11+1".into()
                ]
            )
        );
    }

    #[test]
    fn html_tag_aliases_and_case() {
        let (text, entities) = html(
            "<STRONG>a</strong><Em>b</em><ins>c</ins><strike>d</strike><del>e</del>\
             <tg-spoiler>f</tg-spoiler><span class=\"tg-spoiler\">g</span><B>h</B>",
        );
        assert_eq!(text, "abcdefgh");
        assert_eq!(
            entities,
            [
                "bold 0+1",
                "italic 1+1",
                "underline 2+1",
                "strikethrough 3+1",
                "strikethrough 4+1",
                "spoiler 5+1",
                "spoiler 6+1",
                "bold 7+1"
            ]
        );
    }

    #[test]
    fn html_same_range_sorts_by_telegram_priority() {
        // Italic is outer in the source, but on equal ranges Telegram lists bold first.
        assert_eq!(html("<i><b>x</b></i>").1, ["bold 0+1", "italic 0+1"]);
        // Longer entities come before the ones they contain.
        assert_eq!(html("<b>a</b><i>bc</i>").1, ["bold 0+1", "italic 1+2"]);
    }

    #[test]
    fn html_offsets_are_utf16() {
        let (text, entities) = html("<b>😀</b> <i>привет</i> <u>x</u>");
        assert_eq!(text, "😀 привет x");
        assert_eq!(entities, ["bold 0+2", "italic 3+6", "underline 10+1"]);
        assert_eq!(utf16_len(&text), 11);
        assert_eq!(utf16_len("привет"), 6);
        assert_eq!(utf16_len("👍🏽"), 4);
    }

    #[test]
    fn html_drops_empty_entities() {
        assert_eq!(html("<b></b>x<i><u></u></i>"), ("x".into(), vec![]));
    }

    #[test]
    fn html_decodes_only_known_entities() {
        assert_eq!(
            html("&lt;b&gt; &amp; &quot;q&quot; &#65;&#x42;&#67 &#x1F600; &lt&gt").0,
            "<b> & \"q\" ABC 😀 <>"
        );
        // Unknown named entities, a bare '&' and '>' stay literal.
        assert_eq!(
            html("&nbsp; &copy; Tom & Jerry a > b &#0; &#X41;").0,
            "&nbsp; &copy; Tom & Jerry a > b &#0; &#X41;"
        );
        // A decoded emoji counts as two UTF-16 units.
        assert_eq!(html("&#x1F600;<b>x</b>").1, ["bold 2+1"]);
    }

    #[test]
    fn html_pre_with_language() {
        assert_eq!(
            html("<pre><code class=\"language-python\">print(1)</code></pre>"),
            ("print(1)".into(), vec!["pre 0+8 python".into()])
        );
        // The other nesting order means the same.
        assert_eq!(
            html("<code class='language-go'><pre>x</pre></code>").1,
            ["pre 0+1 go"]
        );
        assert_eq!(
            html("<pre>a\nb</pre>"),
            ("a\nb".into(), vec!["pre 0+3".into()])
        );
        // A language on a lone <code> is dropped.
        assert_eq!(html("<code class=\"language-go\">y</code>").1, ["code 0+1"]);
        // <code> inside <pre> over a smaller range stays a separate entity.
        assert_eq!(
            html("<pre>a<code class=\"language-go\">b</code></pre>").1,
            ["pre 0+2", "code 1+1"]
        );
    }

    #[test]
    fn html_links_and_mentions() {
        assert_eq!(
            html("<a href=\"tg://user?id=123\">Bob</a>").1,
            ["text_mention 0+3 user 123"]
        );
        assert_eq!(
            html("<a href=\"https://Example.COM\">x</a>").1,
            ["text_link 0+1 https://example.com/"]
        );
        assert_eq!(
            html("<a href='http://a.com/path?q=1'>x</a>").1,
            ["text_link 0+1 http://a.com/path?q=1"]
        );
        // No protocol means http; an unquoted value is a lower-cased name token.
        assert_eq!(
            html("<a href=Example.com>x</a>").1,
            ["text_link 0+1 http://example.com/"]
        );
        // Without href the text is the URL.
        assert_eq!(
            html("<a>t.me/relaygram</a>").1,
            ["text_link 0+14 http://t.me/relaygram"]
        );
        assert_eq!(
            html("<a href=\"tg://resolve?domain=x\">x</a>").1,
            ["text_link 0+1 tg://resolve?domain=x"]
        );
        // Links Telegram can't open are dropped, keeping the text.
        assert_eq!(
            html("<a href=\"javascript:alert(1)\">x</a>"),
            ("x".into(), vec![])
        );
        assert_eq!(html("<a href=\"localhost\">x</a>").1, Vec::<String>::new());
        assert_eq!(
            html("<a href=\"ftp://a.com\">x</a>").1,
            Vec::<String>::new()
        );
    }

    #[test]
    fn html_blockquotes_spoilers_and_custom_emoji() {
        let (text, entities) = html(
            "<blockquote>q</blockquote><blockquote expandable>e</blockquote>\
             <tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji>",
        );
        assert_eq!(text, "qe👍");
        assert_eq!(
            entities,
            [
                "blockquote 0+1",
                "expandable_blockquote 1+1",
                "custom_emoji 2+2 5368324170671202286"
            ]
        );
    }

    #[test]
    fn html_error_wording() {
        let cases = [
            (
                "<foo>x</foo>",
                "Unsupported start tag \"foo\" at byte offset 0",
            ),
            ("a<br>b", "Unsupported start tag \"br\" at byte offset 1"),
            (
                "привет <br>",
                "Unsupported start tag \"br\" at byte offset 13",
            ),
            ("a < b", "Unsupported start tag \"\" at byte offset 2"),
            ("<<b>x</b>", "Unsupported start tag \"<b\" at byte offset 0"),
            (
                "<b>x",
                "Can't find end tag corresponding to start tag \"b\"",
            ),
            (
                "<b><i>x</i>",
                "Can't find end tag corresponding to start tag \"b\"",
            ),
            ("hello</b>", "Unexpected end tag at byte offset 5"),
            (
                "<b><i>text</b></i>",
                "Unmatched end tag at byte offset 10, expected \"</i>\", found \"</b>\"",
            ),
            ("<b>x</b", "Unclosed end tag at byte offset 4"),
            ("x <b", "Unclosed start tag at byte offset 2"),
            ("<a href=\"x\"", "Unclosed start tag at byte offset 0"),
            ("<a href", "Unclosed start tag \"a\" at byte offset 0"),
            ("<a href=", "Unclosed start tag \"a\" at byte offset 0"),
            (
                "<a =\"x\">y</a>",
                "Empty attribute name in the tag \"a\" at byte offset 0",
            ),
            (
                "<a href=x/>y</a>",
                "Unexpected end of name token at byte offset 8",
            ),
            (
                "<span>x</span>",
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0",
            ),
            (
                "<span class=\"x\">x</span>",
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0",
            ),
            (
                "<tg-emoji emoji-id=\"abc\">👍</tg-emoji>",
                "Invalid custom emoji identifier specified",
            ),
            (
                "&#xD83D;&#xDE00;",
                "Text contains invalid Unicode characters after decoding HTML entities, \
                 check for unmatched surrogate code units",
            ),
        ];
        for (input, error) in cases {
            assert_eq!(parse_html(input), Err(error.to_owned()), "{input:?}");
        }
    }

    #[test]
    fn html_end_tag_may_omit_the_name() {
        assert_eq!(html("<b>x</>").1, ["bold 0+1"]);
        assert_eq!(html("<b>x</b >").1, ["bold 0+1"]);
    }

    // --- MarkdownV2 ---------------------------------------------------------------------------

    #[test]
    fn markdown_v2_styles() {
        assert_eq!(
            md2("*bold* _italic_ __underline__ ~strike~ ||spoiler||"),
            (
                "bold italic underline strike spoiler".into(),
                vec![
                    "bold 0+4".into(),
                    "italic 5+6".into(),
                    "underline 12+9".into(),
                    "strikethrough 22+6".into(),
                    "spoiler 29+7".into()
                ]
            )
        );
    }

    #[test]
    fn markdown_v2_nesting_and_underline_italic_ambiguity() {
        assert_eq!(
            md2("*a _b ~c~ __d___ e*"),
            (
                "a b c d e".into(),
                vec![
                    "bold 0+9".into(),
                    "italic 2+5".into(),
                    "strikethrough 4+1".into(),
                    "underline 6+1".into()
                ]
            )
        );
    }

    #[test]
    fn markdown_v2_utf16_offsets() {
        assert_eq!(md2("*привет* 😀 _x_").1, ["bold 0+6", "italic 10+1"]);
    }

    #[test]
    fn markdown_v2_escapes() {
        assert_eq!(
            md2("1\\+1\\=2\\. \\*not bold\\* a\\\\b"),
            ("1+1=2. *not bold* a\\b".into(), vec![])
        );
        // A backslash before a non-ASCII character is just a backslash.
        assert_eq!(md2("\\ж").0, "\\ж");
    }

    #[test]
    fn markdown_v2_links() {
        assert_eq!(
            md2("[text](http://example.com)"),
            (
                "text".into(),
                vec!["text_link 0+4 http://example.com/".into()]
            )
        );
        assert_eq!(
            md2("[a](http://example.com/\\)x)").1,
            ["text_link 0+1 http://example.com/)x"]
        );
        assert_eq!(
            md2("[Bob](tg://user?id=42)").1,
            ["text_mention 0+3 user 42"]
        );
        // Without (url) the text is the URL; an unusable URL keeps just the text.
        assert_eq!(md2("[t\\.me]").1, ["text_link 0+4 http://t.me/"]);
        assert_eq!(md2("[x](javascript:1)"), ("x".into(), vec![]));
        assert_eq!(
            md2("![👍](tg://emoji?id=5368324170671202286)").1,
            ["custom_emoji 0+2 5368324170671202286"]
        );
    }

    #[test]
    fn markdown_v2_code_and_pre() {
        // Inside code only '`' is special.
        assert_eq!(md2("`x.y*z`"), ("x.y*z".into(), vec!["code 0+5".into()]));
        assert_eq!(
            md2("```rust\nfn main() {}\n```"),
            ("fn main() {}\n".into(), vec!["pre 0+13 rust".into()])
        );
        assert_eq!(
            md2("```\nplain```"),
            ("plain".into(), vec!["pre 0+5".into()])
        );
        assert_eq!(
            md2("```inline```"),
            ("inline".into(), vec!["pre 0+6".into()])
        );
    }

    #[test]
    fn markdown_v2_blockquotes() {
        assert_eq!(
            md2(">line one\n>line two\nafter"),
            (
                "line one\nline two\nafter".into(),
                vec!["blockquote 0+18".into()]
            )
        );
        assert_eq!(
            md2("intro\n>quoted *bold*"),
            (
                "intro\nquoted bold".into(),
                vec!["blockquote 6+11".into(), "bold 13+4".into()]
            )
        );
        assert_eq!(
            md2("**>a\n>b||"),
            ("a\nb".into(), vec!["expandable_blockquote 0+3".into()])
        );
        assert_eq!(
            md2("**>a\n>b||\nc"),
            ("a\nb\nc".into(), vec!["expandable_blockquote 0+4".into()])
        );
    }

    #[test]
    fn markdown_v2_error_wording() {
        let reserved = |c: char| {
            format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
        };
        let cases = [
            ("Hello.", reserved('.')),
            ("a > b", reserved('>')),
            ("1+1", reserved('+')),
            ("|x", reserved('|')),
            ("wow!", reserved('!')),
            ("(x)", reserved('(')),
            (
                "*bold",
                "Can't find end of Bold entity at byte offset 0".into(),
            ),
            (
                "ab _it",
                "Can't find end of Italic entity at byte offset 3".into(),
            ),
            (
                "__u",
                "Can't find end of Underline entity at byte offset 0".into(),
            ),
            (
                "x ||s",
                "Can't find end of Spoiler entity at byte offset 2".into(),
            ),
            (
                "[a",
                "Can't find end of TextUrl entity at byte offset 0".into(),
            ),
            (
                "```py\nx",
                "Can't find end of PreCode entity at byte offset 0".into(),
            ),
            (
                "`x",
                "Can't find end of Code entity at byte offset 0".into(),
            ),
            (
                ">quote *bold\nnext",
                "Can't find end of Bold entity at byte offset 7".into(),
            ),
            (
                "[a](http://x.com",
                "Can't find end of a URL at byte offset 4".into(),
            ),
            (
                "![x](https://a.com)",
                "Custom emoji URL must have scheme tg".into(),
            ),
            (
                "![x]",
                "Custom emoji entity must contain a tg://emoji URL".into(),
            ),
        ];
        for (input, error) in cases {
            assert_eq!(parse_markdown_v2(input), Err(error), "{input:?}");
        }
    }

    // --- legacy Markdown ----------------------------------------------------------------------

    #[test]
    fn markdown_legacy() {
        assert_eq!(
            md("*bold* _italic_ `code` [link](http://example.com) ```python\nprint(1)```"),
            (
                "bold italic code link print(1)".into(),
                vec![
                    "bold 0+4".into(),
                    "italic 5+6".into(),
                    "code 12+4".into(),
                    "text_link 17+4 http://example.com/".into(),
                    "pre 22+8 python".into()
                ]
            )
        );
        // No nesting, no reserved characters, and \ escapes only _ * ` [.
        assert_eq!(
            md("*a _b_ c* 1.5! \\*x\\* \\."),
            ("a _b_ c 1.5! *x* \\.".into(), vec!["bold 0+7".into()])
        );
        assert_eq!(md("[Bob](tg://user?id=7)").1, ["text_mention 0+3 user 7"]);
        assert_eq!(md("*😀* _x_").1, ["bold 0+2", "italic 3+1"]);
    }

    #[test]
    fn markdown_legacy_errors() {
        for (input, offset) in [
            ("*abc", 0),
            ("x _y", 2),
            ("ok `code", 3),
            ("[link", 0),
            ("```x", 0),
        ] {
            assert_eq!(
                parse_markdown(input),
                Err(format!(
                    "Can't find end of the entity starting at byte offset {offset}"
                )),
                "{input:?}"
            );
        }
        assert_eq!(
            parse_markdown("привет *x"),
            Err("Can't find end of the entity starting at byte offset 13".into())
        );
    }

    // --- detection ----------------------------------------------------------------------------

    #[test]
    fn detects_bot_commands() {
        assert_eq!(detect("/start abc"), ["bot_command 0+6"]);
        assert_eq!(detect("/help@shop_bot"), ["bot_command 0+14"]);
        assert_eq!(detect("try /start_2 now"), ["bot_command 4+8"]);
        // Not at a word start, a too-short bot name, or a path.
        assert!(detect("and/or").is_empty());
        assert!(detect("/start@ab").is_empty());
        assert!(detect("/usr/bin").is_empty());
    }

    #[test]
    fn detects_mentions_and_urls() {
        assert_eq!(
            detect("hi @alice see https://example.com"),
            ["mention 3+6", "url 14+19"]
        );
        assert_eq!(detect("😀 @alice"), ["mention 3+6"]);
        assert!(detect("@abc").is_empty());
        assert_eq!(detect("@gif cats"), ["mention 0+4"]);
        assert!(detect("mail@alice").is_empty());
    }

    #[test]
    fn detects_urls_and_emails() {
        assert_eq!(
            detect("mail bob@example.com or visit example.com/x."),
            ["email 5+15", "url 30+13"]
        );
        assert_eq!(detect("(see https://a.com/x_(y))"), ["url 5+19"]);
        assert_eq!(detect("https://a.com/path?q=1#f, ok"), ["url 0+24"]);
        assert_eq!(detect("http://localhost.dev:8080/x"), ["url 0+27"]);
        assert_eq!(detect("ip 192.168.0.1 here"), ["url 3+11"]);
        assert_eq!(detect("open tg://resolve?domain=x"), ["url 5+21"]);
        assert_eq!(detect("сайт пример.рф"), ["url 5+9"]);
        // File names and sentences are not URLs.
        assert!(detect("see main.txt").is_empty());
        assert!(detect("Hello.World").is_empty());
        assert!(detect("v1.2.3").is_empty());
    }

    #[test]
    fn detects_hashtags_and_cashtags() {
        assert_eq!(detect("#tag and #123 and a#b"), ["hashtag 0+4"]);
        assert_eq!(detect("#привет_2"), ["hashtag 0+9"]);
        assert_eq!(detect("buy $USD now"), ["cashtag 4+4"]);
        assert!(detect("$usd $TOOLONGXX").is_empty());
    }

    #[test]
    fn detected_entities_are_sorted_and_disjoint() {
        let entities = detect_entities("/cmd @user1 #x https://a.com/@user2 b@c.io");
        assert_eq!(
            describe(&entities),
            [
                "bot_command 0+4",
                "mention 5+6",
                "hashtag 12+2",
                "url 15+20",
                "email 36+6"
            ]
        );
    }

    // --- rendering ----------------------------------------------------------------------------

    fn ent(kind: &str, offset: usize, length: usize) -> Entity {
        Entity::plain(kind, offset, length)
    }

    /// Checks that tags nest properly and that the text survives rendering unchanged.
    fn assert_well_formed(rendered: &str, text: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut plain = String::new();
        let mut rest = rendered;
        while let Some(lt) = rest.find('<') {
            plain.push_str(&rest[..lt]);
            let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
            let tag = &rest[lt + 1..gt];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "in {rendered}");
            } else if tag == "br" {
                plain.push('\n');
            } else {
                let name = tag.split(' ').next().unwrap_or("");
                stack.push(name.to_owned());
            }
            rest = &rest[gt + 1..];
        }
        plain.push_str(rest);
        assert!(stack.is_empty(), "unclosed {stack:?} in {rendered}");
        let unescaped = plain
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        assert_eq!(unescaped, text);
    }

    #[test]
    fn render_escapes_everything() {
        assert_eq!(
            render_html("<script>alert('x')</script> & \"q\"\nnext", &[]),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;<br>next"
        );
        let (text, entities) = parse_html("<b>&lt;script&gt;</b>").unwrap();
        assert_eq!(render_html(&text, &entities), "<b>&lt;script&gt;</b>");
    }

    #[test]
    fn render_basic_tags() {
        let mut pre = ent("pre", 0, 1);
        pre.language = Some("rust\"><x".into());
        let rendered = render_html(
            "abcdefghij",
            &[
                ent("bold", 1, 1),
                ent("italic", 2, 1),
                ent("underline", 3, 1),
                ent("strikethrough", 4, 1),
                ent("code", 5, 1),
                ent("spoiler", 6, 1),
                ent("bot_command", 7, 1),
                ent("blockquote", 8, 1),
                ent("expandable_blockquote", 9, 1),
                pre,
            ],
        );
        assert_eq!(
            rendered,
            "<pre><code class=\"language-rust&quot;&gt;&lt;x\">a</code></pre><b>b</b><i>c</i>\
             <u>d</u><s>e</s><code>f</code><span class=\"spoiler\">g</span>\
             <span class=\"cmd\">h</span><blockquote>i</blockquote>\
             <blockquote class=\"expandable\">j</blockquote>"
        );
    }

    #[test]
    fn render_links_only_with_safe_schemes() {
        let link = |url: &str| {
            let mut e = ent("text_link", 0, 1);
            e.url = Some(url.into());
            render_html("x", &[e])
        };
        let a = |href: &str| {
            format!(
                "<a href=\"{href}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">x</a>"
            )
        };
        assert_eq!(link("https://a.com/"), a("https://a.com/"));
        assert_eq!(link("HTTP://a.com/"), a("HTTP://a.com/"));
        assert_eq!(link("tg://resolve?domain=x"), a("tg://resolve?domain=x"));
        assert_eq!(link("mailto:a@b.co"), a("mailto:a@b.co"));
        assert_eq!(
            link("https://a.com/\"onmouseover=\"x"),
            a("https://a.com/&quot;onmouseover=&quot;x")
        );
        for bad in [
            "javascript:alert(1)",
            " javascript:x",
            "data:text/html,x",
            "ftp://a.com",
            "//a.com",
        ] {
            assert_eq!(link(bad), "x", "{bad}");
        }

        let mut mention = ent("text_mention", 0, 1);
        mention.user = Some(json!({"id": 42, "first_name": "Bob"}));
        assert_eq!(render_html("x", &[mention]), a("tg://user?id=42"));
        assert_eq!(
            render_html("a.com", &[ent("url", 0, 5)]),
            a("http://a.com").replace(">x<", ">a.com<")
        );
    }

    #[test]
    fn render_splits_overlapping_entities() {
        let rendered = render_html("abcdef", &[ent("bold", 0, 4), ent("italic", 2, 4)]);
        assert_eq!(rendered, "<b>ab<i>cd</i></b><i>ef</i>");
        assert_well_formed(&rendered, "abcdef");
    }

    #[test]
    fn render_nests_same_range_outer_first() {
        let mut link = ent("text_link", 0, 2);
        link.url = Some("https://a.com/".into());
        let rendered = render_html("ab", &[ent("bold", 0, 2), link, ent("blockquote", 0, 2)]);
        assert!(
            rendered.starts_with("<blockquote><a href=\"https://a.com/\""),
            "{rendered}"
        );
        assert!(
            rendered.ends_with("<b>ab</b></a></blockquote>"),
            "{rendered}"
        );
    }

    #[test]
    fn render_uses_utf16_offsets_and_clamps() {
        assert_eq!(render_html("😀 hi", &[ent("bold", 3, 2)]), "😀 <b>hi</b>");
        // An offset inside the surrogate pair takes the whole emoji; past the end is clamped.
        assert_eq!(render_html("😀x", &[ent("bold", 1, 1)]), "<b>😀</b>x");
        assert_eq!(render_html("ab", &[ent("bold", 1, 100)]), "a<b>b</b>");
        assert_eq!(
            render_html("ab", &[ent("bold", 5, 1), ent("italic", 0, 0)]),
            "ab"
        );
    }

    #[test]
    fn render_random_overlaps_stay_well_formed() {
        let text = "Hello, <wörld> & 😀 friends\nline two";
        let kinds = [
            "bold",
            "italic",
            "underline",
            "spoiler",
            "code",
            "text_link",
            "blockquote",
        ];
        let len = utf16_len(text);
        // A small deterministic LCG, so the test needs no extra crates.
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        for _ in 0..300 {
            let entities: Vec<Entity> = (0..next(6) + 1)
                .map(|_| {
                    let offset = next(len);
                    let mut e = ent(kinds[next(kinds.len())], offset, next(len - offset) + 1);
                    e.url = Some("https://example.com/?a=1&b=<2>".into());
                    e
                })
                .collect();
            assert_well_formed(&render_html(text, &entities), text);
        }
    }

    #[test]
    fn render_round_trips_parsed_html() {
        let (text, entities) = parse_html(
            "<b>bold <i>both</i></b>\n<a href=\"https://a.com\">link</a> <code>&lt;x&gt;</code>",
        )
        .unwrap();
        assert_eq!(
            render_html(&text, &entities),
            "<b>bold <i>both</i></b><br>\
             <a href=\"https://a.com/\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">link</a> \
             <code>&lt;x&gt;</code>"
        );
    }

    // --- robustness ---------------------------------------------------------------------------

    #[test]
    fn arbitrary_input_never_panics_and_entities_stay_in_the_text() {
        let alphabet: Vec<char> = "<>/&#;x*_~|[]()`\\!\n@.:?=\"' aé😀b-$1tg".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        let fixed = [
            "<a href=\"https://a.com\">",
            "<pre><code class=\"language-x\">",
            "```py\n",
            "**>",
            "||\n",
            "https://x.io/",
            "/cmd@bot_name",
            "&#x1F600;",
        ];
        for _ in 0..3000 {
            let mut input = String::new();
            for _ in 0..next(24) {
                if next(6) == 0 {
                    input.push_str(fixed[next(fixed.len())]);
                } else {
                    input.push(alphabet[next(alphabet.len())]);
                }
            }
            let parsed = [
                parse_html(&input),
                parse_markdown_v2(&input),
                parse_markdown(&input),
                Ok((input.clone(), detect_entities(&input))),
            ];
            for (text, entities) in parsed.into_iter().flatten() {
                let len = utf16_len(&text);
                for e in &entities {
                    assert!(
                        e.length > 0 && e.offset + e.length <= len,
                        "{input:?}: {e:?}"
                    );
                }
                assert_well_formed(&render_html(&text, &entities), &text);
            }
        }
    }

    // --- serde --------------------------------------------------------------------------------

    #[test]
    fn entity_serializes_like_the_bot_api() {
        let (_, entities) = parse_html("<a href=\"https://a.com\">x</a><b>y</b>").unwrap();
        assert_eq!(
            serde_json::to_value(&entities).unwrap(),
            json!([
                {"type": "text_link", "offset": 0, "length": 1, "url": "https://a.com/"},
                {"type": "bold", "offset": 1, "length": 1}
            ])
        );
        let back: Vec<Entity> =
            serde_json::from_value(serde_json::to_value(&entities).unwrap()).unwrap();
        assert_eq!(back, entities);
    }
}
