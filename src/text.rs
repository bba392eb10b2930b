//! Readable one-line rendering of streaming events for `--format text`: Mastodon
//! status HTML to plain text, removal of terminal control characters, and the
//! line layout `<time> <event> <who> <text> <url>`.

use serde_json::{Map, Value};

/// Maximum number of characters kept from the status text and from every other
/// server-provided field of a rendered line.
const MAX_FIELD_CHARS: usize = 500;

/// Maximum number of scalar fields listed in the summary of an event that has
/// no `id` and no known shape.
const MAX_SUMMARY_FIELDS: usize = 4;

const REPLACEMENT: char = '\u{FFFD}';

/// Converts Mastodon status `content` HTML to plain text.
///
/// `<br>` becomes a newline and paragraph ends (`</p>`, and other block
/// elements) become a blank line. Other tags are removed and their text is
/// kept, except the contents of `<span class="invisible">`, which Mastodon uses
/// to hide URL prefixes and tails. A `<span class="ellipsis">` gets a trailing
/// `…`, as the Mastodon web interface shows it. Character references are
/// decoded exactly once, so `&amp;lt;` becomes `&lt;`.
///
/// The result can still contain control characters (for example from
/// `&#27;`), so pass it through [`sanitize_line`] before printing it.
pub fn html_to_text(html: &str) -> String {
    let mut builder = TextBuilder::default();
    let mut rest = html;

    while !rest.is_empty() {
        let Some(special) = rest.find(['<', '&']) else {
            builder.push_source_text(rest);
            break;
        };
        builder.push_source_text(&rest[..special]);
        rest = &rest[special..];

        if rest.starts_with('&') {
            match decode_reference(rest) {
                Some((decoded, used)) => {
                    builder.push_decoded(decoded);
                    rest = &rest[used..];
                }
                None => {
                    builder.push_decoded('&');
                    rest = &rest[1..];
                }
            }
        } else {
            let used = builder.consume_markup(rest);
            rest = &rest[used..];
        }
    }

    builder.out.trim().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SpanKind {
    Plain,
    Invisible,
    Ellipsis,
}

#[derive(Default)]
struct TextBuilder {
    out: String,
    /// Open `<span>` elements, innermost last.
    spans: Vec<SpanKind>,
    /// Number of `SpanKind::Invisible` entries in `spans`. Text is dropped while
    /// it is non-zero.
    invisible_open: usize,
}

impl TextBuilder {
    fn hidden(&self) -> bool {
        self.invisible_open > 0
    }

    /// Appends text that appeared literally in the HTML source. Runs of source
    /// whitespace collapse into one space, as in HTML rendering.
    fn push_source_text(&mut self, text: &str) {
        if self.hidden() {
            return;
        }
        for c in text.chars() {
            if matches!(c, ' ' | '\n' | '\r' | '\t' | '\u{0C}') {
                if !self.out.is_empty() && !self.out.ends_with([' ', '\n']) {
                    self.out.push(' ');
                }
            } else {
                self.out.push(c);
            }
        }
    }

    /// Appends a character produced by a character reference, unchanged.
    fn push_decoded(&mut self, c: char) {
        if !self.hidden() {
            self.out.push(c);
        }
    }

    /// Ends the current line so that the output ends with at least `newlines`
    /// newline characters. Does nothing at the start of the output.
    fn push_break(&mut self, newlines: usize) {
        if self.hidden() {
            return;
        }
        let trimmed_len = self.out.trim_end_matches(' ').len();
        self.out.truncate(trimmed_len);
        if self.out.is_empty() {
            return;
        }
        let present = self.out.len() - self.out.trim_end_matches('\n').len();
        for _ in present..newlines {
            self.out.push('\n');
        }
    }

    /// Handles the markup at the start of `s`, which starts with `<`, and
    /// returns the number of bytes consumed.
    fn consume_markup(&mut self, s: &str) -> usize {
        if let Some(comment) = s.strip_prefix("<!--") {
            return match comment.find("-->") {
                Some(end) => 4 + end + 3,
                None => s.len(),
            };
        }

        let starts_tag = s[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        if !starts_tag {
            self.push_decoded('<');
            return 1;
        }

        // An unterminated tag runs to the end of the input and is dropped, as
        // HTML parsers do.
        let Some(end) = find_tag_end(s) else {
            return s.len();
        };
        self.apply_tag(&s[1..end]);
        end + 1
    }

    /// Applies one tag, given the text between `<` and `>`.
    fn apply_tag(&mut self, tag: &str) {
        let (closing, body) = match tag.strip_prefix('/') {
            Some(body) => (true, body),
            None => (false, tag),
        };
        let name_end = body
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let attributes = &body[name_end..];

        match name.as_str() {
            "br" => self.push_break_always(),
            "p" | "div" | "blockquote" | "pre" | "ul" | "ol" | "h1" | "h2" | "h3" | "h4" | "h5"
            | "h6" => self.push_break(2),
            "li" => self.push_break(1),
            "span" if closing => self.close_span(),
            "span" if !attributes.trim_end().ends_with('/') => self.open_span(attributes),
            _ => {}
        }
    }

    fn push_break_always(&mut self) {
        if !self.hidden() {
            let trimmed_len = self.out.trim_end_matches(' ').len();
            self.out.truncate(trimmed_len);
            self.out.push('\n');
        }
    }

    fn open_span(&mut self, attributes: &str) {
        let class = attribute_value(attributes, "class").unwrap_or("");
        let mut classes = class.split_ascii_whitespace();
        let kind = if classes.clone().any(|c| c == "invisible") {
            SpanKind::Invisible
        } else if classes.any(|c| c == "ellipsis") {
            SpanKind::Ellipsis
        } else {
            SpanKind::Plain
        };
        if kind == SpanKind::Invisible {
            self.invisible_open += 1;
        }
        self.spans.push(kind);
    }

    fn close_span(&mut self) {
        match self.spans.pop() {
            Some(SpanKind::Invisible) => self.invisible_open -= 1,
            Some(SpanKind::Ellipsis) => self.push_decoded('…'),
            Some(SpanKind::Plain) | None => {}
        }
    }
}

/// Returns the byte index of the `>` that ends the tag at the start of `s`.
/// A `>` inside a quoted attribute value does not end the tag.
fn find_tag_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return Some(i),
            b'=' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if let Some(&quote @ (b'"' | b'\'')) = bytes.get(i) {
                    let close = bytes[i + 1..].iter().position(|&b| b == quote)?;
                    i += 1 + close + 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Returns the raw value of attribute `requested` (ASCII case-insensitive) from the
/// attribute part of a tag. Character references in the value are not decoded.
fn attribute_value<'a>(attributes: &'a str, requested: &str) -> Option<&'a str> {
    let is_space = |c: char| c.is_ascii_whitespace();
    let mut rest = attributes;
    loop {
        rest = rest.trim_start_matches(|c: char| is_space(c) || c == '/');
        if rest.is_empty() {
            return None;
        }

        let name_end = rest
            .find(|c: char| is_space(c) || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start_matches(is_space);

        let mut value = "";
        if let Some(after_equals) = rest.strip_prefix('=') {
            let after_equals = after_equals.trim_start_matches(is_space);
            match after_equals.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let quoted = &after_equals[1..];
                    let end = quoted.find(quote).unwrap_or(quoted.len());
                    value = &quoted[..end];
                    rest = &quoted[(end + 1).min(quoted.len())..];
                }
                _ => {
                    let end = after_equals.find(is_space).unwrap_or(after_equals.len());
                    value = &after_equals[..end];
                    rest = &after_equals[end..];
                }
            }
        }

        if name.eq_ignore_ascii_case(requested) {
            return Some(value);
        }
    }
}

/// Decodes the character reference at the start of `s`, which starts with `&`.
/// Returns the character and the number of bytes used, or `None` when `s` does
/// not start with a supported reference terminated by `;`.
fn decode_reference(s: &str) -> Option<(char, usize)> {
    let body = &s[1..];

    if let Some(number) = body.strip_prefix('#') {
        let (digits, radix, marker_len) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 1),
            None => (number, 10, 0),
        };
        let len = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        if len == 0 || !digits[len..].starts_with(';') {
            return None;
        }
        // Saturating arithmetic keeps huge values above U+10FFFF, so they
        // decode to U+FFFD like every other invalid code point.
        let value = digits[..len].chars().fold(0u32, |acc, c| {
            acc.saturating_mul(radix)
                .saturating_add(c.to_digit(radix).unwrap_or(0))
        });
        let decoded = match value {
            0 => REPLACEMENT,
            _ => char::from_u32(value).unwrap_or(REPLACEMENT),
        };
        return Some((decoded, 2 + marker_len + len + 1));
    }

    let len = body
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(body.len());
    if !body[len..].starts_with(';') {
        return None;
    }
    let decoded = match &body[..len] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        _ => return None,
    };
    Some((decoded, 1 + len + 1))
}

/// Makes text safe to print as one terminal line.
///
/// Whitespace, including newlines, tabs, carriage returns and U+0085, becomes
/// a single space, and runs of it collapse. Other control characters (C0,
/// DEL, C1, so also ESC and every escape sequence introducer) are removed, as
/// are the bidirectional embedding, override and isolate characters
/// U+202A–U+202E and U+2066–U+2069. The result is trimmed.
pub fn sanitize_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = true;
        } else if c.is_control() || is_bidi_control(c) {
            continue;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Shortens `text` to `max` characters followed by `…` when it is longer.
fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => {
            let mut short = text[..cut].trim_end().to_string();
            short.push('…');
            short
        }
    }
}

/// Sanitizes and truncates one server-provided field.
fn clean(text: &str) -> String {
    truncate_chars(sanitize_line(text), MAX_FIELD_CHARS)
}

/// Returns the cleaned string field `key`, or `None` when it is missing, not a
/// string, or empty after cleaning.
fn string_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    let value = clean(object.get(key)?.as_str()?);
    (!value.is_empty()).then_some(value)
}

/// Returns a cleaned identifier given as a JSON string or number.
fn id_text(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => clean(s),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty()).then_some(id)
}

fn account_acct(object: &Map<String, Value>) -> Option<String> {
    string_field(object.get("account")?.as_object()?, "acct")
}

/// The pieces of one rendered line, joined by single spaces with empty pieces
/// left out.
#[derive(Default)]
struct LineParts {
    time: Option<String>,
    event: String,
    who: Option<String>,
    text: Option<String>,
    url: Option<String>,
}

impl LineParts {
    fn new(event: &str) -> LineParts {
        LineParts {
            event: event.to_string(),
            ..LineParts::default()
        }
    }

    fn join(self) -> String {
        let mut line = self.time.unwrap_or_else(|| "-".to_string());
        for part in [Some(self.event), self.who, self.text, self.url]
            .into_iter()
            .flatten()
        {
            if !part.is_empty() {
                line.push(' ');
                line.push_str(&part);
            }
        }
        line
    }

    /// Fills who, text and url from a status object. A reblog takes its text
    /// and url from the reblogged status.
    fn set_status(&mut self, status: &Map<String, Value>) {
        match status.get("reblog").and_then(Value::as_object) {
            Some(original) => {
                let booster = account_acct(status).unwrap_or_else(|| "?".to_string());
                let author = account_acct(original).unwrap_or_else(|| "?".to_string());
                self.who = Some(format!("@{booster} boosted @{author}"));
                self.text = status_text(original);
                self.url = status_url(original);
            }
            None => {
                self.who = account_acct(status).map(|acct| format!("@{acct}"));
                self.text = status_text(status);
                self.url = status_url(status);
            }
        }
    }
}

/// Returns the plain text of a status, prefixed with its content warning.
fn status_text(status: &Map<String, Value>) -> Option<String> {
    let content = status
        .get("content")
        .and_then(Value::as_str)
        .map(|html| sanitize_line(&html_to_text(html)))
        .unwrap_or_default();
    let warning = status
        .get("spoiler_text")
        .and_then(Value::as_str)
        .map(sanitize_line)
        .unwrap_or_default();

    let text = match (warning.is_empty(), content.is_empty()) {
        (true, _) => content,
        (false, true) => format!("CW: {warning}"),
        (false, false) => format!("CW: {warning} {content}"),
    };
    (!text.is_empty()).then(|| truncate_chars(text, MAX_FIELD_CHARS))
}

fn status_url(status: &Map<String, Value>) -> Option<String> {
    string_field(status, "url").or_else(|| string_field(status, "uri"))
}

/// Renders one streaming event as a single readable line without a trailing
/// newline. Every server-provided piece is passed through [`sanitize_line`] and
/// shortened to 500 characters, and missing fields or unexpected types never
/// cause a panic.
pub fn render_event_line(event: &str, payload: &Value, backfill: bool) -> String {
    let mut event_name = clean(event);
    if event_name.is_empty() {
        event_name = "?".to_string();
    }

    let parts = match payload {
        Value::Object(object) => render_object(&event_name, object),
        other => {
            let mut parts = LineParts::new(&event_name);
            parts.text = scalar_summary(other);
            parts
        }
    };

    let mut line = parts.join();
    if backfill {
        line.push_str(" (backfill)");
    }
    line
}

fn render_object(event_name: &str, object: &Map<String, Value>) -> LineParts {
    let mut parts = LineParts::new(event_name);
    match event_name {
        "update" | "status.update" => {
            let edited = match event_name {
                "status.update" => string_field(object, "edited_at"),
                _ => None,
            };
            parts.time = edited.or_else(|| string_field(object, "created_at"));
            parts.set_status(object);
        }
        "notification" => {
            parts.time = string_field(object, "created_at");
            if let Some(kind) = string_field(object, "type") {
                parts.event = format!("{event_name}:{kind}");
            }
            parts.who = account_acct(object).map(|acct| format!("@{acct}"));
            if let Some(status) = object.get("status").and_then(Value::as_object) {
                parts.text = status_text(status);
                parts.url = status_url(status);
            }
        }
        "conversation" => match object.get("last_status").and_then(Value::as_object) {
            Some(status) => {
                parts.time = string_field(status, "created_at");
                parts.set_status(status);
            }
            None => parts.text = object.get("id").and_then(id_text),
        },
        "announcement" => {
            parts.time = string_field(object, "published_at");
            let id = object.get("id").and_then(id_text);
            let content = object
                .get("content")
                .and_then(Value::as_str)
                .map(|html| clean(&html_to_text(html)));
            parts.who = id;
            parts.text = content;
        }
        _ => parts.text = object_summary(object),
    }
    parts
}

/// Summarizes an object of unknown shape: its `id` when present, otherwise its
/// first few scalar fields as `key=value`.
fn object_summary(object: &Map<String, Value>) -> Option<String> {
    if let Some(id) = object.get("id").and_then(id_text) {
        return Some(id);
    }
    let fields: Vec<String> = object
        .iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(s) => sanitize_line(s),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some(format!("{}={value}", sanitize_line(key)))
        })
        .take(MAX_SUMMARY_FIELDS)
        .collect();
    (!fields.is_empty()).then(|| truncate_chars(fields.join(" "), MAX_FIELD_CHARS))
}

/// Summarizes a payload that is not an object, such as the status id of a
/// `delete` event.
fn scalar_summary(payload: &Value) -> Option<String> {
    match payload {
        Value::String(_) | Value::Number(_) => id_text(payload),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(format!("[{} items]", items.len())),
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_decodes_entities_once() {
        assert_eq!(html_to_text("&amp;amp;"), "&amp;");
        assert_eq!(html_to_text("&amp;lt;b&amp;gt;"), "&lt;b&gt;");
        assert_eq!(html_to_text("a &lt;b&gt; c"), "a <b> c");
        assert_eq!(html_to_text("&quot;x&quot; &apos;y&#39;"), "\"x\" 'y'");
        assert_eq!(html_to_text("1&nbsp;s"), "1\u{A0}s");
    }

    #[test]
    fn html_decodes_numeric_references() {
        assert_eq!(html_to_text("&#65;&#x42;&#X43;"), "ABC");
        assert_eq!(html_to_text("&#128512;"), "😀");
        assert_eq!(html_to_text("&#x1F980;"), "🦀");
    }

    #[test]
    fn html_invalid_references() {
        assert_eq!(html_to_text("&#0;"), "\u{FFFD}");
        assert_eq!(html_to_text("&#xD800;"), "\u{FFFD}");
        assert_eq!(html_to_text("&#x110000;"), "\u{FFFD}");
        assert_eq!(html_to_text("&#99999999999999999999;"), "\u{FFFD}");
        assert_eq!(html_to_text("&bogus; &copy;"), "&bogus; &copy;");
        assert_eq!(html_to_text("&#; &#x; &#12"), "&#; &#x; &#12");
        assert_eq!(html_to_text("fish & chips &amp"), "fish & chips &amp");
    }

    #[test]
    fn html_paragraphs_and_line_breaks() {
        assert_eq!(html_to_text("<p>one</p><p>two</p>"), "one\n\ntwo");
        assert_eq!(html_to_text("<p>a<br>b<br />c<BR/>d</p>"), "a\nb\nc\nd");
        assert_eq!(html_to_text("<p>a\n  b</p>"), "a b");
    }

    #[test]
    fn html_tags_removed_text_kept() {
        assert_eq!(
            html_to_text("<p>x <em>y</em> <a href=\"https://h.test/?a=1&amp;b=2\">z</a></p>"),
            "x y z"
        );
        assert_eq!(html_to_text("<a title=\"a > b\">link</a>"), "link");
        assert_eq!(html_to_text("a <!-- hidden <b> --> b"), "a b");
        assert_eq!(html_to_text("1 < 2"), "1 < 2");
        assert_eq!(html_to_text("cut <a href=\"x"), "cut");
    }

    #[test]
    fn html_invisible_span_dropped() {
        let html = "<a href=\"https://docs.test/very/long/path\"><span class=\"invisible\">https://</span>\
                    <span class=\"ellipsis\">docs.test/very/lo</span>\
                    <span class=\"invisible\">ng/path</span></a>";
        assert_eq!(html_to_text(html), "docs.test/very/lo…");
        assert_eq!(
            html_to_text("<span class='invisible'>a<span>b</span>c</span>d"),
            "d"
        );
    }

    #[test]
    fn sanitize_removes_escape_sequences() {
        let cleaned = sanitize_line("a\u{1b}[31mred\u{1b}[0m b");
        assert!(!cleaned.contains('\u{1b}'));
        assert_eq!(cleaned, "a[31mred[0m b");

        let title = sanitize_line("x\u{1b}]0;title\u{7}y");
        assert!(!title.contains('\u{1b}'));
        assert!(!title.contains('\u{7}'));
        assert_eq!(title, "x]0;titley");
    }

    #[test]
    fn sanitize_removes_c1_and_del() {
        assert_eq!(sanitize_line("a\u{9b}31mb\u{7f}c\u{80}\u{9f}"), "a31mbc");
    }

    #[test]
    fn sanitize_removes_bidi_controls() {
        let text =
            "a\u{202A}b\u{202B}c\u{202C}d\u{202D}e\u{202E}f\u{2066}g\u{2067}h\u{2068}i\u{2069}j";
        assert_eq!(sanitize_line(text), "abcdefghij");
    }

    #[test]
    fn sanitize_flattens_whitespace() {
        assert_eq!(
            sanitize_line("  one\ntwo\r\n\tthree   four \u{85} "),
            "one two three four"
        );
        assert_eq!(sanitize_line("a\u{A0}\u{2028}b"), "a b");
        assert_eq!(sanitize_line("\n\t"), "");
    }

    #[test]
    fn sanitize_keeps_ordinary_text() {
        assert_eq!(
            sanitize_line("Grüße, 世界 🦀 #rust"),
            "Grüße, 世界 🦀 #rust"
        );
    }

    fn sample_status() -> Value {
        json!({
            "id": "990001",
            "created_at": "2027-01-02T03:04:05.000Z",
            "edited_at": null,
            "spoiler_text": "",
            "uri": "https://town.test/users/erin/statuses/990001",
            "url": "https://town.test/@erin/990001",
            "reblog": null,
            "content": "<p>Hello <span class=\"h-card\" translate=\"no\"><a href=\"https://town.test/@finn\" \
                        class=\"u-url mention\">@<span>finn</span></a></span> &amp; friends!</p>\
                        <p>Notes: <a href=\"https://notes.test/a/b/c\" target=\"_blank\" rel=\"nofollow noopener\">\
                        <span class=\"invisible\">https://</span><span class=\"\">notes.test/a/b/c</span>\
                        <span class=\"invisible\"></span></a> <a href=\"https://town.test/tags/tea\" \
                        class=\"mention hashtag\" rel=\"tag\">#<span>tea</span></a></p>",
            "account": { "id": "5", "acct": "erin", "display_name": "Erin" },
            "media_attachments": [],
            "mentions": [{ "id": "6", "acct": "finn" }]
        })
    }

    #[test]
    fn render_update_line() {
        let line = render_event_line("update", &sample_status(), false);
        assert_eq!(
            line,
            "2027-01-02T03:04:05.000Z update @erin Hello @finn & friends! Notes: notes.test/a/b/c #tea \
             https://town.test/@erin/990001"
        );
    }

    #[test]
    fn render_update_backfill_suffix() {
        let line = render_event_line("update", &sample_status(), true);
        assert!(line.ends_with("https://town.test/@erin/990001 (backfill)"));
    }

    #[test]
    fn render_status_update_uses_edited_at() {
        let mut status = sample_status();
        status["edited_at"] = json!("2027-01-02T04:00:00.000Z");
        let line = render_event_line("status.update", &status, false);
        assert!(line.starts_with("2027-01-02T04:00:00.000Z status.update @erin Hello"));

        let line = render_event_line("update", &status, false);
        assert!(line.starts_with("2027-01-02T03:04:05.000Z update "));
    }

    #[test]
    fn render_content_warning_prefix() {
        let mut status = sample_status();
        status["spoiler_text"] = json!("spoilers\nahead");
        status["content"] = json!("<p>the end</p>");
        let line = render_event_line("update", &status, false);
        assert!(line.contains(" @erin CW: spoilers ahead the end https://"));
    }

    #[test]
    fn render_reblog() {
        let mut original = sample_status();
        original["account"]["acct"] = json!("gus@far.test");
        original["url"] = json!("https://far.test/@gus/1");
        original["content"] = json!("<p>original words</p>");
        let boost = json!({
            "id": "990002",
            "created_at": "2027-01-03T00:00:00.000Z",
            "content": "",
            "url": null,
            "uri": "https://town.test/users/erin/statuses/990002/activity",
            "account": { "acct": "erin" },
            "reblog": original
        });
        let line = render_event_line("update", &boost, false);
        assert_eq!(
            line,
            "2027-01-03T00:00:00.000Z update @erin boosted @gus@far.test original words https://far.test/@gus/1"
        );
    }

    #[test]
    fn render_notification_with_status() {
        let notification = json!({
            "id": "77",
            "type": "favourite",
            "created_at": "2027-01-04T00:00:00.000Z",
            "account": { "acct": "hana@else.test" },
            "status": sample_status()
        });
        let line = render_event_line("notification", &notification, false);
        assert!(
            line.starts_with(
                "2027-01-04T00:00:00.000Z notification:favourite @hana@else.test Hello"
            )
        );
        assert!(line.ends_with(" https://town.test/@erin/990001"));
    }

    #[test]
    fn render_notification_without_status() {
        let notification = json!({
            "id": "78",
            "type": "follow",
            "created_at": "2027-01-04T00:00:01.000Z",
            "account": { "acct": "ivo" }
        });
        let line = render_event_line("notification", &notification, false);
        assert_eq!(line, "2027-01-04T00:00:01.000Z notification:follow @ivo");
    }

    #[test]
    fn render_conversation_uses_last_status() {
        let conversation =
            json!({ "id": "12", "unread": true, "accounts": [], "last_status": sample_status() });
        let line = render_event_line("conversation", &conversation, false);
        assert!(line.starts_with("2027-01-02T03:04:05.000Z conversation @erin Hello"));
    }

    #[test]
    fn render_delete_forms() {
        assert_eq!(
            render_event_line("delete", &json!("990001"), false),
            "- delete 990001"
        );
        assert_eq!(
            render_event_line("delete", &json!(990001), false),
            "- delete 990001"
        );
        assert_eq!(
            render_event_line("announcement.delete", &json!("4"), true),
            "- announcement.delete 4 (backfill)"
        );
        assert_eq!(
            render_event_line("delete", &json!("9\u{1b}[2J9"), false),
            "- delete 9[2J9"
        );
    }

    #[test]
    fn render_unknown_event_summary() {
        let line = render_event_line("x.new_thing", &json!({ "id": 5, "note": "hi" }), false);
        assert_eq!(line, "- x.new_thing 5");

        let reaction = json!({ "announcement_id": "4", "count": 2, "name": "🎉" });
        let line = render_event_line("announcement.reaction", &reaction, false);
        assert_eq!(
            line,
            "- announcement.reaction announcement_id=4 count=2 name=🎉"
        );

        assert_eq!(
            render_event_line("filters_changed", &Value::Null, false),
            "- filters_changed"
        );
        assert_eq!(
            render_event_line("odd", &json!([1, 2]), false),
            "- odd [2 items]"
        );
    }

    #[test]
    fn render_wrong_types_do_not_panic() {
        let cases = [
            json!({ "created_at": 5, "account": "nobody", "content": ["x"], "reblog": 3, "url": {} }),
            json!({ "account": { "acct": 7 }, "reblog": { "account": null, "content": null } }),
            json!({ "type": 1, "status": "str", "account": [] }),
            json!({ "last_status": 4 }),
            json!(true),
            json!(1.5),
        ];
        for event in [
            "update",
            "status.update",
            "notification",
            "conversation",
            "announcement",
            "delete",
            "",
        ] {
            for payload in &cases {
                let line = render_event_line(event, payload, false);
                assert!(!line.is_empty());
                assert!(!line.contains('\n'));
            }
        }
        let line = render_event_line("update", &cases[1], false);
        assert_eq!(line, "- update @? boosted @?");
    }

    #[test]
    fn render_removes_hostile_characters() {
        let mut status = sample_status();
        status["account"]["acct"] = json!("evil\u{1b}]0;pwned\u{7}\u{202E}");
        status["content"] = json!("<p>a&#27;[31mb&#x9b;c</p><p>line\u{2067}two</p>");
        status["url"] = json!("https://x.test/\u{1b}[1m");
        let line = render_event_line("update\n", &status, false);
        for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202E}', '\u{2067}', '\n'] {
            assert!(!line.contains(bad), "{bad:?} left in {line:?}");
        }
        assert_eq!(
            line,
            "2027-01-02T03:04:05.000Z update @evil]0;pwned a[31mbc linetwo https://x.test/[1m"
        );
    }

    #[test]
    fn render_truncates_long_text() {
        let mut status = sample_status();
        status["content"] = json!(format!("<p>{}</p>", "é".repeat(2000)));
        let line = render_event_line("update", &status, false);
        let text = format!("{}…", "é".repeat(MAX_FIELD_CHARS));
        assert!(line.contains(&format!(" @erin {text} https://")));
    }

    #[test]
    fn truncate_keeps_short_text() {
        assert_eq!(truncate_chars("abc".to_string(), 3), "abc");
        assert_eq!(truncate_chars("abcd".to_string(), 3), "abc…");
        assert_eq!(truncate_chars("ab d".to_string(), 3), "ab…");
    }
}
