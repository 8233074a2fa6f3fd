use relaygram_sandbox::markup::{Entity, parse_html, parse_markdown_v2, utf16_len};
use serde_json::json;

use super::split::{split_html, split_plain, to_html};
use super::*;

fn content<'a>(
    source: &'a str,
    parse_mode: ParseMode,
    data: Option<&'a serde_json::Value>,
    templated: bool,
) -> Content<'a> {
    Content {
        source,
        parse_mode,
        buttons: &[],
        data,
        templated,
    }
}

fn html_template(source: &str, data: serde_json::Value) -> Result<Rendered, RenderError> {
    render(
        &content(source, ParseMode::Html, Some(&data), true),
        Limit::Text,
    )
}

#[test]
fn html_templates_escape_variables_so_telegram_accepts_them() {
    let r = html_template(
        "<b>New order</b> from {{ customer }}: {{ note }}",
        json!({"customer": "Bob <admin>", "note": "5 < 6 & \"quotes\""}),
    )
    .unwrap();
    assert_eq!(r.parse_mode, ParseMode::Html);
    assert_eq!(
        r.parts,
        ["<b>New order</b> from Bob &lt;admin&gt;: 5 &lt; 6 &amp; &quot;quotes&quot;"]
    );
    let (plain, entities) = parse_html(&r.parts[0]).unwrap();
    assert_eq!(plain, "New order from Bob <admin>: 5 < 6 & \"quotes\"");
    assert_eq!(entities.len(), 1);
    // Without escaping this would be "Unsupported start tag": |safe is the opt-out.
    let err = html_template("{{ x|safe }}", json!({"x": "<admin>"})).unwrap_err();
    assert_eq!(err.field, "template");
    assert!(
        err.message.contains("can't parse entities"),
        "{}",
        err.message
    );
}

#[test]
fn literal_texts_are_checked_like_telegram_does() {
    let ok = render(
        &content("<b>hi</b> & bye", ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap();
    assert_eq!(ok.parts, ["<b>hi</b> & bye"]);
    // Not templated: `{{` is just text.
    let braces = render(
        &content("{{ x }}", ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap();
    assert_eq!(braces.parts, ["{{ x }}"]);
    let err = render(
        &content("<b>hi</i>", ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap_err();
    assert_eq!(err.field, "text");
    assert!(err.message.contains("Unmatched end tag"), "{}", err.message);
    let err = render(
        &content("Price: 3.50!", ParseMode::MarkdownV2, None, false),
        Limit::Text,
    )
    .unwrap_err();
    assert_eq!(err.field, "text");
    assert!(
        err.message.contains("Character '.' is reserved"),
        "{}",
        err.message
    );
    let err = render(
        &content("  <b> </b>\n", ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap_err();
    assert!(err.message.contains("empty"), "{}", err.message);
    // A caption may be empty: the media goes without one.
    let caption = render(&content("", ParseMode::Html, None, false), Limit::Caption).unwrap();
    assert_eq!(caption.parts, [""]);
    // Plain texts are not parsed.
    let plain = render(&content("<b", ParseMode::Plain, None, false), Limit::Text).unwrap();
    assert_eq!(plain.parts, ["<b"]);
}

#[test]
fn missing_variables_are_a_data_error_naming_them() {
    let err = html_template(
        "Hello {{ user.first_name }}, your total is {{ total }}",
        json!({"user": {"last_name": "x"}, "total": 3}),
    )
    .unwrap_err();
    assert_eq!(err.field, "data");
    assert!(err.message.contains("`user.first_name`"), "{}", err.message);
    let err = html_template("{{ a }}{{ b }}", json!({})).unwrap_err();
    assert!(err.message.contains("`a`, `b`"), "{}", err.message);
    let err = render(
        &content("{{ a }}", ParseMode::Html, Some(&json!([1])), true),
        Limit::Text,
    )
    .unwrap_err();
    assert_eq!(err.field, "data");
    let err = html_template("{% for x in %}", json!({})).unwrap_err();
    assert_eq!(err.field, "template");
    assert!(err.message.contains("line 1"), "{}", err.message);
}

#[test]
fn loops_and_conditions_render() {
    let r = html_template(
        "<b>{{ items|length }} items</b>\n{% for i in items %}• {{ i.name }}{% if i.qty > 1 %} ×{{ i.qty }}{% endif %}\n{% endfor %}",
        json!({"items": [{"name": "Tea & cake", "qty": 2}, {"name": "<Coffee>", "qty": 1}]}),
    )
    .unwrap();
    assert_eq!(
        r.parts,
        ["<b>2 items</b>\n• Tea &amp; cake ×2\n• &lt;Coffee&gt;\n"]
    );
}

#[test]
fn markdown_v2_templates_escape_variables() {
    let data = json!({"price": "3.50", "name": "snake_case (v1)!"});
    let r = render(
        &content(
            "*{{ name }}* costs {{ price }}\\!",
            ParseMode::MarkdownV2,
            Some(&data),
            true,
        ),
        Limit::Text,
    )
    .unwrap();
    assert_eq!(r.parse_mode, ParseMode::MarkdownV2);
    assert_eq!(r.parts, ["*snake\\_case \\(v1\\)\\!* costs 3\\.50\\!"]);
    let (plain, entities) = parse_markdown_v2(&r.parts[0]).unwrap();
    assert_eq!(plain, "snake_case (v1)! costs 3.50!");
    assert_eq!(entities[0].kind, "bold");
}

#[test]
fn buttons_are_templated_and_checked() {
    let rows = vec![vec![
        ButtonSpec {
            text: "Order {{ id }} <new>".into(),
            url: Some("https://shop.example.com/o/{{ id }}?a=1&b=2".into()),
            callback_data: None,
            ..ButtonSpec::default()
        },
        ButtonSpec {
            text: "Cancel".into(),
            url: None,
            callback_data: Some("cancel:{{ id }}:{{ 'x' * 100 }}".into()),
            ..ButtonSpec::default()
        },
    ]];
    let data = json!({"id": "A7"});
    let r = render(
        &Content {
            source: "Order {{ id }}",
            parse_mode: ParseMode::Html,
            buttons: &rows,
            data: Some(&data),
            templated: true,
        },
        Limit::Text,
    )
    .unwrap();
    assert_eq!(
        r.buttons,
        [[
            RenderedButton::Url {
                text: "Order A7 <new>".into(),
                url: "https://shop.example.com/o/A7?a=1&b=2".into()
            },
            RenderedButton::Callback {
                text: "Cancel".into(),
                data: format!("cancel:A7:{}", "x".repeat(100)),
                answer: None,
            }
        ]]
    );
    let bad = |rows: Vec<Vec<ButtonSpec>>, data: serde_json::Value| {
        render(
            &Content {
                source: "hi",
                parse_mode: ParseMode::Html,
                buttons: &rows,
                data: Some(&data),
                templated: true,
            },
            Limit::Text,
        )
        .unwrap_err()
    };
    let b = |text: &str, url: Option<&str>, cb: Option<&str>| ButtonSpec {
        text: text.into(),
        url: url.map(Into::into),
        callback_data: cb.map(Into::into),
        ..ButtonSpec::default()
    };
    let err = bad(
        vec![vec![b("x", Some("https://a.b"), Some("d"))]],
        json!({}),
    );
    assert_eq!(err.field, "buttons");
    assert!(err.message.contains("exactly one"), "{}", err.message);
    let err = bad(vec![vec![b("x", None, None)]], json!({}));
    assert!(err.message.contains("buttons[0][0]"), "{}", err.message);
    let err = bad(
        vec![vec![b("x", Some("javascript:alert(1)"), None)]],
        json!({}),
    );
    assert!(err.message.contains("buttons[0][0].url"), "{}", err.message);
    let err = bad(
        vec![vec![b("x", Some("{{ link }}"), None)]],
        json!({"link": "nope"}),
    );
    assert!(err.message.contains("not a valid URL"), "{}", err.message);
    let err = bad(vec![vec![b("{{ who }}", None, Some("d"))]], json!({}));
    assert_eq!(err.field, "data");
    assert!(err.message.contains("`who`"), "{}", err.message);
    let err = bad(vec![vec![]], json!({}));
    assert!(err.message.contains("buttons[0]"), "{}", err.message);
    let err = bad(vec![vec![b("x", None, Some("d")); 9]], json!({}));
    assert!(err.message.contains("1 to 8"), "{}", err.message);
    let err = bad(vec![vec![b(" ", None, Some("d"))]], json!({}));
    assert!(err.message.contains("empty"), "{}", err.message);
}

// ---- splitting ------------------------------------------------------------------------

/// Non-space characters of a text with the entity kinds (and URLs) covering each.
fn styled(text: &str, entities: &[Entity]) -> Vec<(char, Vec<String>)> {
    let mut pos = 0;
    let mut out = Vec::new();
    for c in text.chars() {
        if !c.is_whitespace() {
            let mut kinds: Vec<String> = entities
                .iter()
                .filter(|e| e.offset <= pos && pos < e.offset + e.length)
                .map(|e| format!("{}{}", e.kind, e.url.as_deref().unwrap_or("")))
                .collect();
            kinds.sort();
            out.push((c, kinds));
        }
        pos += c.len_utf16();
    }
    out
}

/// Checks parts: each parses, fits, is numbered; together they hold the original text
/// with the same formatting on every character.
fn check_parts(original: &str, parts: &[String], limit: usize) {
    let (plain, entities) = parse_html(original).unwrap();
    let n = parts.len();
    assert!(n > 1, "expected a split");
    let mut joined = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let (text, ents) =
            parse_html(part).unwrap_or_else(|e| panic!("part {i} does not parse: {e}\n{part}"));
        assert!(
            utf16_len(&text) <= limit,
            "part {i} is {} units (limit {limit})",
            utf16_len(&text)
        );
        let marker = format!("[{}/{n}]", i + 1);
        assert!(
            text.starts_with(&marker),
            "part {i} lacks {marker}: {text:?}"
        );
        let marker_units = utf16_len(&marker) + 1;
        assert!(ents.iter().all(|e| e.offset >= marker_units), "{part}");
        let styled_part = styled(&text, &ents);
        joined.extend(styled_part.into_iter().skip(marker.chars().count()));
    }
    assert_eq!(joined, styled(&plain, &entities), "formatting changed");
}

#[test]
fn long_html_splits_at_paragraphs_with_tags_reopened() {
    let paragraph = |i: usize| {
        format!(
            "<b>Paragraph {i}</b> {}",
            "lorem ipsum ".repeat(30).trim_end()
        )
    };
    let source: String = (0..40).map(paragraph).collect::<Vec<_>>().join("\n\n");
    let r = render(&content(&source, ParseMode::Html, None, false), Limit::Text).unwrap();
    check_parts(&source, &r.parts, 4096);
    assert_eq!(r.parse_mode, ParseMode::Html);
    // Cuts fell between paragraphs: every part ends a paragraph.
    for part in &r.parts {
        assert!(
            part.ends_with("lorem ipsum"),
            "{}",
            &part[part.len() - 30..]
        );
    }
    // A bold run across the cut is closed and reopened.
    let long_bold = format!("<b>{}</b>", "word ".repeat(2000).trim_end());
    let r = render(
        &content(&long_bold, ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap();
    check_parts(&long_bold, &r.parts, 4096);
    assert_eq!(r.parts.len(), 3);
    assert!(r.parts[0].starts_with("[1/3] <b>word") && r.parts[0].ends_with("word</b>"));
    assert!(r.parts[1].starts_with("[2/3] <b>word"));
}

#[test]
fn lines_then_words_then_characters() {
    // One paragraph of lines: cuts at line ends.
    let lines: String = (0..300)
        .map(|i| format!("line {i} of the report\n"))
        .collect();
    let parts = split_plain(&lines, 1000).unwrap();
    for p in &parts[..parts.len() - 1] {
        assert!(p.ends_with("of the report"), "{p:?}");
    }
    // One line of words: cuts at spaces.
    let words = "alpha beta gamma ".repeat(200);
    let parts = split_plain(&words, 500).unwrap();
    for p in &parts {
        assert!(utf16_len(p) <= 500);
        let body = p.split_once(' ').unwrap().1;
        assert!(body.starts_with("alpha") || body.starts_with("beta") || body.starts_with("gamma"));
    }
    // One endless word: cut inside it, never inside a character.
    let word = "😀".repeat(3000);
    let parts = split_plain(&word, 1024).unwrap();
    let total: usize = parts
        .iter()
        .map(|p| p.split_once(' ').unwrap().1.chars().count())
        .sum();
    assert_eq!(total, 3000);
    assert!(parts.iter().all(|p| utf16_len(p) <= 1024));
}

#[test]
fn emoji_count_as_two_units() {
    // 2100 emoji = 4200 UTF-16 units (> 4096) though only 2100 characters.
    let text = "😀 ".repeat(2100);
    let text = text.trim_end();
    let r = render(&content(text, ParseMode::Html, None, false), Limit::Text).unwrap();
    assert_eq!(r.parts.len(), 2);
    // 1400 "é " is 2799 units: under the limit in UTF-16, over it in bytes.
    let text = "é ".repeat(1400);
    let r = render(
        &content(text.trim_end(), ParseMode::Html, None, false),
        Limit::Text,
    )
    .unwrap();
    assert_eq!(r.parts.len(), 1);
    // Entities count as decoded: 1000 "&amp;" is 1000 characters, not 5000.
    let text = "&amp;".repeat(1000);
    let r = render(&content(&text, ParseMode::Html, None, false), Limit::Text).unwrap();
    assert_eq!(r.parts, std::slice::from_ref(&text));
    // Captions: 1024.
    let r = render(
        &content(&text, ParseMode::Html, None, false),
        Limit::Caption,
    )
    .unwrap();
    assert_eq!(r.parts.len(), 1);
    let text = "&lt;".repeat(1025);
    let r = render(
        &content(&text, ParseMode::Html, None, false),
        Limit::Caption,
    )
    .unwrap();
    assert_eq!(r.parts.len(), 2);
    assert!(
        r.parts[0].starts_with("[1/2] &lt;&lt;"),
        "{}",
        &r.parts[0][..20]
    );
}

#[test]
fn markdown_v2_splits_are_sent_as_html() {
    let source = format!("*{}* _tail_", "bold\\.text ".repeat(600).trim_end());
    let r = render(
        &content(&source, ParseMode::MarkdownV2, None, false),
        Limit::Text,
    )
    .unwrap();
    assert_eq!(r.parse_mode, ParseMode::Html);
    let (plain, entities) = parse_markdown_v2(&source).unwrap();
    let as_html = to_html(&plain, &entities);
    check_parts(&as_html, &r.parts, 4096);
}

#[test]
fn many_parts_get_wider_markers() {
    let text = "word ".repeat(3000);
    let parts = split_plain(&text, 100).unwrap();
    assert!(parts.len() > 100, "{}", parts.len());
    let n = parts.len();
    assert!(parts[0].starts_with(&format!("[1/{n}] ")));
    assert!(parts.iter().all(|p| utf16_len(p) <= 100));
    // Runaway output is refused before it is parsed.
    let err = html_template("{{ 'x' * 2000000 }}", json!({})).unwrap_err();
    assert!(
        err.message.contains("bytes after rendering"),
        "{}",
        err.message
    );
    // Too many parts for one message.
    let err = render(
        &content(&"word ".repeat(60_000), ParseMode::Plain, None, false),
        Limit::Text,
    )
    .unwrap_err();
    assert!(err.message.contains("too long"), "{}", err.message);
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "alpha",
    "beta",
    "😀",
    "👍🏽",
    "漢字",
    "a&amp;b",
    "&lt;tag&gt;",
    "x",
    "long-long-word",
    "&quot;q&quot;",
    "🇫🇷",
    "é",
    "a",
    "bb",
];

fn random_html(rng: &mut Rng, depth: usize, budget: &mut usize) -> String {
    let mut out = String::new();
    while *budget > 0 {
        *budget -= 1;
        match rng.below(if depth < 3 { 14 } else { 10 }) {
            0..=5 => out.push_str(WORDS[rng.below(WORDS.len())]),
            6 => out.push(' '),
            7 => out.push('\n'),
            8 => out.push_str("\n\n"),
            9 => {
                if rng.below(4) == 0 {
                    return out;
                }
                out.push(' ');
            }
            _ => {
                let (open, close) = match rng.below(8) {
                    0 => ("<b>", "</b>"),
                    1 => ("<i>", "</i>"),
                    2 => ("<u>", "</u>"),
                    3 => ("<a href=\"https://example.com/?a=1&amp;b=2\">", "</a>"),
                    4 => ("<tg-spoiler>", "</tg-spoiler>"),
                    5 => ("<code>", "</code>"),
                    6 => ("<blockquote>", "</blockquote>"),
                    _ => ("<s>", "</s>"),
                };
                let inner = if open == "<code>" {
                    // Code holds no other entity.
                    WORDS[rng.below(WORDS.len())].to_string() + " x y"
                } else {
                    random_html(rng, depth + 1, budget)
                };
                if !inner.trim().is_empty() {
                    out.push_str(open);
                    out.push_str(&inner);
                    out.push_str(close);
                }
            }
        }
    }
    out
}

#[test]
fn property_random_html_splits_keep_text_and_formatting() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for round in 0..400 {
        let mut budget = 20 + rng.below(400);
        let source = random_html(&mut rng, 0, &mut budget);
        let Ok((plain, entities)) = parse_html(&source) else {
            continue;
        };
        if plain.trim().is_empty() {
            continue;
        }
        for limit in [24, 40, 64, 100, 257] {
            if utf16_len(&plain) <= limit {
                continue;
            }
            let parts = split_html(&plain, &entities, limit)
                .unwrap_or_else(|e| panic!("round {round}, limit {limit}: {e}\n{source}"));
            check_parts(&source, &parts, limit);
            checked += 1;
        }
    }
    assert!(checked > 500, "only {checked} splits checked");
}

#[test]
fn property_every_size_of_plain_text_fits() {
    let base = "The quick brown 🦊 jumps over the lazy dog.\nA second line 漢字.\n\n";
    for size in (10..3000).step_by(37) {
        let text: String = base.chars().cycle().take(size).collect();
        if text.trim().is_empty() {
            continue;
        }
        for limit in [20, 33, 128, 1024] {
            let parts = split_plain(&text, limit).unwrap();
            let n = parts.len();
            let mut rebuilt = String::new();
            for (i, p) in parts.iter().enumerate() {
                assert!(utf16_len(p) <= limit, "size {size}, limit {limit}: {p:?}");
                let body = p
                    .strip_prefix(&format!("[{}/{n}] ", i + 1))
                    .unwrap_or_else(|| panic!("{p:?}"));
                rebuilt.push_str(body);
            }
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(
                squash(&rebuilt),
                squash(&text),
                "size {size}, limit {limit}"
            );
        }
    }
}

#[test]
fn blocks_and_pre_code_survive_a_split() {
    let code = (0..200)
        .map(|i| format!("let x{i} = {i};\n"))
        .collect::<String>();
    let source = format!(
        "Intro\n<pre><code class=\"language-rust\">{code}</code></pre><blockquote>{}</blockquote>",
        "quoted words ".repeat(100)
    );
    let (plain, entities) = parse_html(&source).unwrap();
    let parts = split_html(&plain, &entities, 1000).unwrap();
    check_parts(&source, &parts, 1000);
    assert!(parts[1].starts_with("[2/"), "{}", parts[1]);
    assert!(
        parts
            .iter()
            .skip(1)
            .any(|p| p.contains("<pre><code class=\"language-rust\">"))
    );
    // Blocks start on the line after the marker.
    assert!(
        parts
            .iter()
            .any(|p| p.contains("]\n<pre>") || p.contains("]\n<blockquote>")),
        "{parts:?}"
    );
    let mention = "<a href=\"tg://user?id=42\">Bob</a> <tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji> ";
    let source = mention.repeat(200);
    let (plain, entities) = parse_html(&source).unwrap();
    assert!(entities.iter().any(|e| e.kind == "text_mention"));
    let parts = split_html(&plain, &entities, 300).unwrap();
    check_parts(&source, &parts, 300);
}
