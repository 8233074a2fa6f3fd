//! Splitting texts longer than Telegram allows into numbered parts.
//!
//! The split works on what Telegram counts: the text *after* entity parsing (UTF-16 code
//! units) with its entities. Cuts go at a paragraph break, else a line break, else a space
//! (preferring one in the second half of the part so parts stay full), and only as a last
//! resort inside a word; never inside a character, a custom emoji or an HTML entity (the
//! text is already decoded). Each part gets a `[i/n]` marker, and the entities that span a
//! cut are closed at the end of one part and reopened at the start of the next. Parts are
//! written back as Telegram HTML (whatever the source's parse mode), then parsed again to
//! check each one is accepted and fits.

use relaygram_sandbox::markup::{Entity, parse_html, utf16_len};

use super::engine::escape_html;

/// One part: its text and entities (UTF-16 offsets).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Plain text (what Telegram shows).
    pub text: String,
    /// Entities over `text`.
    pub entities: Vec<Entity>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    Paragraph,
    Line,
    Word,
}

/// Splits `text` (with `entities`) into numbered pieces of at most `limit` UTF-16 units
/// each, marker included. `None` when `limit` is too small to hold a marker and a character.
pub fn split(text: &str, entities: &[Entity], limit: usize) -> Option<Vec<Piece>> {
    let chars: Vec<char> = text.chars().collect();
    // UTF-16 offset of each char index (and of the end).
    let mut at = Vec::with_capacity(chars.len() + 1);
    let mut pos = 0;
    for c in &chars {
        at.push(pos);
        pos += c.len_utf16();
    }
    at.push(pos);
    // Char indexes a cut must not fall on: inside a custom emoji.
    let mut forbidden = vec![false; chars.len() + 1];
    for e in entities.iter().filter(|e| e.kind == "custom_emoji") {
        for (i, f) in forbidden.iter_mut().enumerate() {
            if at[i] > e.offset && at[i] < e.offset + e.length {
                *f = true;
            }
        }
    }
    let mut digits = 1;
    loop {
        // "[n/n]" and a separator.
        let marker = 2 * digits + 4;
        let budget = limit.checked_sub(marker).filter(|b| *b >= 2)?;
        let ranges = ranges(&chars, &at, &forbidden, budget);
        let needed = ranges.len().to_string().len();
        if needed > digits {
            digits = needed;
            continue;
        }
        let n = ranges.len();
        return Some(
            ranges
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| piece(&chars, &at, entities, a, b, i + 1, n))
                .collect(),
        );
    }
}

/// The char ranges of the parts, each at most `budget` UTF-16 units.
fn ranges(chars: &[char], at: &[usize], forbidden: &[bool], budget: usize) -> Vec<(usize, usize)> {
    let len = chars.len();
    let mut out = Vec::new();
    let mut s = 0;
    while s < len && is_space(chars[s]) {
        s += 1;
    }
    while s < len {
        let mut end = if at[len] - at[s] <= budget {
            len
        } else {
            // The furthest end that fits.
            let mut e = s;
            while e < len && at[e + 1] - at[s] <= budget {
                e += 1;
            }
            let half = s + (e - s) / 2;
            let found = [
                (Cut::Paragraph, half),
                (Cut::Line, half),
                (Cut::Word, s + 1),
            ]
            .into_iter()
            .find_map(|(cut, min)| {
                (min.max(s + 1)..=e)
                    .rev()
                    .find(|&p| !forbidden[p] && is_cut(chars, p, cut))
            });
            match found {
                Some(p) => p,
                None => {
                    // A word longer than a part: cut inside it, not in a custom emoji.
                    let mut p = e;
                    while p > s + 1 && forbidden[p] {
                        p -= 1;
                    }
                    p
                }
            }
        };
        let next = end;
        while end > s && is_space(chars[end - 1]) {
            end -= 1;
        }
        if end > s {
            out.push((s, end));
        }
        s = next;
        while s < len && is_space(chars[s]) {
            s += 1;
        }
    }
    out
}

/// Spaces a part may be cut at (not a no-break space).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Whether a part may end before char `p` with this kind of cut.
fn is_cut(chars: &[char], p: usize, cut: Cut) -> bool {
    let c = chars.get(p).copied();
    match cut {
        Cut::Paragraph => c == Some('\n') && chars.get(p + 1) == Some(&'\n'),
        Cut::Line => c == Some('\n'),
        Cut::Word => c.is_some_and(is_space),
    }
}

fn piece(
    chars: &[char],
    at: &[usize],
    entities: &[Entity],
    a: usize,
    b: usize,
    i: usize,
    n: usize,
) -> Piece {
    let (from, to) = (at[a], at[b]);
    let mut clipped: Vec<Entity> = entities
        .iter()
        .filter_map(|e| {
            let start = e.offset.max(from);
            let end = (e.offset + e.length).min(to);
            (start < end).then(|| {
                let mut e = e.clone();
                e.offset = start - from;
                e.length = end - start;
                e
            })
        })
        .collect();
    // A block (quote, code block) at the start goes on the line after the marker.
    let block_first = clipped.iter().any(|e| {
        e.offset == 0
            && matches!(
                e.kind.as_str(),
                "pre" | "blockquote" | "expandable_blockquote"
            )
    });
    let marker = format!("[{i}/{n}]{}", if block_first { '\n' } else { ' ' });
    let shift = utf16_len(&marker);
    for e in &mut clipped {
        e.offset += shift;
    }
    let mut text = marker;
    text.extend(&chars[a..b]);
    Piece {
        text,
        entities: clipped,
    }
}

fn open_tag(e: &Entity) -> Option<(String, &'static str)> {
    let attr = |s: &str| escape_html(s);
    Some(match e.kind.as_str() {
        "bold" => ("<b>".into(), "</b>"),
        "italic" => ("<i>".into(), "</i>"),
        "underline" => ("<u>".into(), "</u>"),
        "strikethrough" => ("<s>".into(), "</s>"),
        "spoiler" => ("<tg-spoiler>".into(), "</tg-spoiler>"),
        "code" => ("<code>".into(), "</code>"),
        "pre" => match e.language.as_deref().filter(|l| !l.is_empty()) {
            Some(lang) => (
                format!("<pre><code class=\"language-{}\">", attr(lang)),
                "</code></pre>",
            ),
            None => ("<pre>".into(), "</pre>"),
        },
        "text_link" => (
            format!(
                "<a href=\"{}\">",
                attr(e.url.as_deref().unwrap_or_default())
            ),
            "</a>",
        ),
        "text_mention" => {
            let id = e
                .user
                .as_ref()
                .and_then(|u| u.get("id"))
                .and_then(|i| i.as_i64())?;
            (format!("<a href=\"tg://user?id={id}\">"), "</a>")
        }
        "custom_emoji" => (
            format!(
                "<tg-emoji emoji-id=\"{}\">",
                attr(e.custom_emoji_id.as_deref().unwrap_or_default())
            ),
            "</tg-emoji>",
        ),
        "blockquote" => ("<blockquote>".into(), "</blockquote>"),
        "expandable_blockquote" => ("<blockquote expandable>".into(), "</blockquote>"),
        _ => return None,
    })
}

/// Writes text and its (properly nested) entities as Telegram HTML.
pub fn to_html(text: &str, entities: &[Entity]) -> String {
    // Outer entities first: by offset, then longer first, then the given (TDLib) order.
    let mut order: Vec<(usize, &Entity)> = entities.iter().enumerate().collect();
    order.sort_by(|(ia, a), (ib, b)| {
        a.offset
            .cmp(&b.offset)
            .then(b.length.cmp(&a.length))
            .then(ia.cmp(ib))
    });
    let tags: Vec<(usize, usize, String, &'static str)> = order
        .into_iter()
        .filter(|(_, e)| e.length > 0)
        .filter_map(|(_, e)| {
            open_tag(e).map(|(open, close)| (e.offset, e.offset + e.length, open, close))
        })
        .collect();
    let mut out = String::with_capacity(text.len() + tags.len() * 16);
    let mut stack: Vec<(usize, &'static str)> = Vec::new();
    let mut next = 0;
    let mut pos = 0;
    let mut chars = text.chars().peekable();
    loop {
        while let Some(&(end, close)) = stack.last() {
            if end > pos {
                break;
            }
            out.push_str(close);
            stack.pop();
        }
        while let Some((start, end, open, close)) = tags.get(next) {
            if *start > pos {
                break;
            }
            out.push_str(open);
            stack.push((*end, close));
            next += 1;
        }
        let Some(c) = chars.next() else { break };
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
        pos += c.len_utf16();
    }
    while let Some((_, close)) = stack.pop() {
        out.push_str(close);
    }
    out
}

/// Splits and writes each part as HTML, checking each parses back to its text and fits.
pub fn split_html(text: &str, entities: &[Entity], limit: usize) -> Result<Vec<String>, String> {
    let pieces = split(text, entities, limit)
        .ok_or_else(|| format!("a limit of {limit} cannot hold a numbered part"))?;
    pieces
        .into_iter()
        .map(|p| {
            let html = to_html(&p.text, &p.entities);
            match parse_html(&html) {
                Ok((back, _)) if back == p.text && utf16_len(&back) <= limit => Ok(html),
                Ok(_) => Err("a part did not come back as written".to_string()),
                Err(e) => Err(format!("a part could not be written back: {e}")),
            }
        })
        .collect()
}

/// Splits a plain text (no entities) into numbered parts.
pub fn split_plain(text: &str, limit: usize) -> Result<Vec<String>, String> {
    Ok(split(text, &[], limit)
        .ok_or_else(|| format!("a limit of {limit} cannot hold a numbered part"))?
        .into_iter()
        .map(|p| p.text)
        .collect())
}
