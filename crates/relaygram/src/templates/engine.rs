//! The template engine: minijinja with Telegram-aware auto-escaping and strict undefined
//! variables.
//!
//! Message texts are rendered with an auto-escape mode named after their `parse_mode`:
//! every `{{ value }}` is escaped for Telegram HTML (`&`, `<`, `>`, `"`) or for MarkdownV2
//! (a `\` before each reserved character) unless the template marks it `|safe`. Button
//! texts and URLs are rendered without escaping (Telegram shows them as they are).
//! A variable the data does not have is an error naming it, never an empty string.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value,
};

use super::ParseMode;

/// Names the sources are compiled under; the auto-escape callback keys on them.
const HTML_NAME: &str = "text";
const MARKDOWN_NAME: &str = "text.md";
const PLAIN_NAME: &str = "text.txt";
/// Name of a button field (no escaping).
pub(super) const BUTTON_NAME: &str = "button";

const HTML_ESCAPE: AutoEscape = AutoEscape::Custom("telegram-html");
const MARKDOWN_ESCAPE: AutoEscape = AutoEscape::Custom("telegram-markdown-v2");

/// Instructions one render may run: generous for real messages, a stop for runaway loops.
const FUEL: u64 = 500_000;

/// Escapes text for Telegram HTML: only `&`, `<`, `>` and `"` (TDLib knows no other named
/// entity, so `&#x27;` style escaping of `'` and `/` would be shown literally by clients
/// that display the source, and is not needed).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for MarkdownV2: a `\` before `\` and each of ``_*[]()~`>#+-=|{}.!``. The
/// result is correct everywhere in MarkdownV2, including inside code and link URLs.
pub fn escape_markdown_v2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '_'
                | '*'
                | '['
                | ']'
                | '('
                | ')'
                | '~'
                | '`'
                | '>'
                | '#'
                | '+'
                | '-'
                | '='
                | '|'
                | '{'
                | '}'
                | '.'
                | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    // JSON null prints nothing rather than Jinja's "none".
    if value.is_none() {
        return Ok(());
    }
    let escape: fn(&str) -> String = match state.auto_escape() {
        a if a == HTML_ESCAPE && !value.is_safe() => escape_html,
        a if a == MARKDOWN_ESCAPE && !value.is_safe() => escape_markdown_v2,
        AutoEscape::Custom(_) => return write!(out, "{value}").map_err(Error::from),
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(&escape(&value.to_string()))
        .map_err(Error::from)
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Keeps spans, so an error can quote the expression that failed.
    env.set_debug(true);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| match name {
        HTML_NAME => HTML_ESCAPE,
        MARKDOWN_NAME => MARKDOWN_ESCAPE,
        _ => AutoEscape::None,
    });
    env.set_formatter(formatter);
    env
});

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The source is not a valid template (message names the line).
    Syntax(String),
    /// Variables the template uses and the data does not have (dotted paths, or the
    /// failing expression when it goes through a loop variable), and the error.
    Missing(Vec<String>, String),
    /// Rendering failed otherwise (a filter on a wrong type, out of fuel...).
    Render(String),
}

fn describe(e: &Error) -> String {
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

fn name_for(parse_mode: ParseMode) -> &'static str {
    match parse_mode {
        ParseMode::Html => HTML_NAME,
        ParseMode::MarkdownV2 => MARKDOWN_NAME,
        ParseMode::Plain => PLAIN_NAME,
    }
}

/// Checks that `source` compiles; the error names the line.
pub fn check_syntax(source: &str) -> Result<(), TemplateError> {
    ENV.template_from_named_str(PLAIN_NAME, source)
        .map(|_| ())
        .map_err(|e| TemplateError::Syntax(describe(&e)))
}

/// Whether `source` reads the top-level variable `name` (a template that uses `link` is
/// rendered once per recipient). A source that does not compile reads nothing.
pub fn reads(source: &str, name: &str) -> bool {
    ENV.template_from_named_str(PLAIN_NAME, source)
        .map(|t| t.undeclared_variables(false).contains(name))
        .unwrap_or(false)
}

/// Renders `source` (a message text in `parse_mode`, or a button field with
/// [`BUTTON_NAME`] escaping rules when `parse_mode` is `None`) with `data`.
pub fn render(
    source: &str,
    parse_mode: Option<ParseMode>,
    data: &serde_json::Value,
) -> Result<String, TemplateError> {
    let name = parse_mode.map_or(BUTTON_NAME, name_for);
    let template = ENV
        .template_from_named_str(name, source)
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
    let context = Value::from_serialize(data);
    template.render(context).map_err(|e| {
        if e.kind() == ErrorKind::UndefinedError {
            let mut missing = missing_paths(&template.undeclared_variables(true), data);
            if missing.is_empty() {
                // Through a loop variable or a local (`{{ o.missing }}` in a loop): name the
                // failing expression as written.
                let expression = e.range().and_then(|r| source.get(r)).map(str::trim);
                missing.extend(expression.filter(|x| !x.is_empty()).map(str::to_string));
            }
            return TemplateError::Missing(missing, describe(&e));
        }
        TemplateError::Render(describe(&e))
    })
}

/// The dotted paths among `used` that `data` does not have (`user.name` when `user` is an
/// object without `name`, `user` when there is no `user` at all). Paths through a value
/// that is not an object (a list index, an attribute of a string) are not judged here.
fn missing_paths(
    used: &std::collections::HashSet<String>,
    data: &serde_json::Value,
) -> Vec<String> {
    let mut missing = BTreeSet::new();
    for path in used {
        let mut at = data;
        let mut walked = Vec::new();
        for part in path.split('.') {
            walked.push(part);
            match at {
                serde_json::Value::Object(map) => match map.get(part) {
                    Some(next) => at = next,
                    None => {
                        // Globals and built-in functions are not data.
                        if walked.len() > 1 || !is_builtin(part) {
                            missing.insert(walked.join("."));
                        }
                        break;
                    }
                },
                _ => break,
            }
        }
    }
    missing.into_iter().collect()
}

fn is_builtin(name: &str) -> bool {
    ENV.globals().any(|(n, _)| n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn html(source: &str, data: serde_json::Value) -> Result<String, TemplateError> {
        render(source, Some(ParseMode::Html), &data)
    }

    #[test]
    fn html_variables_are_escaped_for_telegram() {
        assert_eq!(
            html(
                "<b>{{ name }}</b>",
                json!({"name": "Tom & <Jerry> \"x\" 'y' /z"})
            )
            .unwrap(),
            "<b>Tom &amp; &lt;Jerry&gt; &quot;x&quot; 'y' /z</b>"
        );
        assert_eq!(
            html(
                "<a href=\"{{ url }}\">go</a>",
                json!({"url": "https://a.com/?a=1&b=\"2\""})
            )
            .unwrap(),
            "<a href=\"https://a.com/?a=1&amp;b=&quot;2&quot;\">go</a>"
        );
        // The escape hatch.
        assert_eq!(
            html("{{ snippet|safe }}", json!({"snippet": "<i>hi</i>"})).unwrap(),
            "<i>hi</i>"
        );
        // Numbers, booleans (as Jinja prints them) and null (nothing).
        assert_eq!(
            html(
                "{{ n }} {{ ok }} [{{ nothing }}]",
                json!({"n": 3.5, "ok": true, "nothing": null})
            )
            .unwrap(),
            "3.5 True []"
        );
        // `|e` is idempotent with auto-escaping.
        assert_eq!(html("{{ x|e }}", json!({"x": "<"})).unwrap(), "&lt;");
    }

    #[test]
    fn markdown_v2_variables_are_escaped() {
        let out = render(
            "*{{ name }}*",
            Some(ParseMode::MarkdownV2),
            &json!({"name": "a_b*c[d](e)~`>#+-=|{}.!\\"}),
        )
        .unwrap();
        assert_eq!(
            out,
            "*a\\_b\\*c\\[d\\]\\(e\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\*"
        );
        let (plain, _) = relaygram_sandbox::markup::parse_markdown_v2(&out).unwrap();
        assert_eq!(plain, "a_b*c[d](e)~`>#+-=|{}.!\\");
    }

    #[test]
    fn plain_and_buttons_are_not_escaped() {
        let data = json!({"x": "<&>"});
        assert_eq!(
            render("{{ x }}", Some(ParseMode::Plain), &data).unwrap(),
            "<&>"
        );
        assert_eq!(render("{{ x }}", None, &data).unwrap(), "<&>");
    }

    #[test]
    fn missing_variables_are_named() {
        match html("Hi {{ user.name }}, {{ total }}", json!({"user": {}})) {
            Err(TemplateError::Missing(names, _)) => assert_eq!(names, ["total", "user.name"]),
            other => panic!("{other:?}"),
        }
        match html("{% if vip %}x{% endif %}{{ a }}", json!({"a": 1})) {
            Err(TemplateError::Missing(names, _)) => assert_eq!(names, ["vip"]),
            other => panic!("{other:?}"),
        }
        // Locals and loop variables are not missing.
        assert_eq!(
            html(
                "{% set n = items|length %}{% for i in items %}{{ loop.index }}:{{ i }} {% endfor %}of {{ n }}",
                json!({"items": ["a", "b"]})
            )
            .unwrap(),
            "1:a 2:b of 2"
        );
        // Through a loop variable: the expression is named.
        match html(
            "{% for o in orders %}\n{{ o.id }} {{ o.total }}{% endfor %}",
            json!({"orders": [{"id": 1}]}),
        ) {
            Err(TemplateError::Missing(names, message)) => {
                assert_eq!(names, ["o.total"]);
                assert!(message.contains("line 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // `default` and `is defined` make a variable optional.
        assert_eq!(
            html(
                "{{ nick|default('friend') }}{% if x is defined %}!{% endif %}",
                json!({})
            )
            .unwrap(),
            "friend"
        );
    }

    #[test]
    fn loops_conditions_and_filters() {
        let out = html(
            "{% for o in orders %}{% if o.paid %}✅{% else %}⏳{% endif %} {{ o.id|upper }} {{ '%.2f'|format(o.total) if false else o.total|round(2) }}\n{% endfor %}",
            json!({"orders": [{"id": "a<1", "paid": true, "total": 4.5678}, {"id": "b", "paid": false, "total": 2}]}),
        )
        .unwrap();
        assert_eq!(out, "✅ A&lt;1 4.57\n⏳ B 2\n");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        match check_syntax("line one\n{% for x in y %}\n{{ x }") {
            Err(TemplateError::Syntax(m)) => assert!(m.contains("line 3"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(check_syntax("{% for x in y %}{{ x }}{% endfor %}").is_ok());
        assert!(matches!(
            check_syntax("{% if x %}"),
            Err(TemplateError::Syntax(_))
        ));
    }

    #[test]
    fn runaway_templates_stop() {
        let err = html(
            "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(
            matches!(err, TemplateError::Render(ref m) if m.contains("fuel")),
            "{err:?}"
        );
    }
}
