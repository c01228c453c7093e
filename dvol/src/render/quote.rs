//! Text from the daemon made safe to print: a file name, a commit message or an error with a
//! newline, a carriage return or a terminal escape sequence must not forge lines or repaint
//! the terminal. Names are quoted C-style as git quotes paths (`"a\nb"`); free text (messages,
//! authors, table cells, errors) has only its control characters escaped. `--json` output
//! goes through neither and keeps the exact text.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` can change what a terminal shows beyond its own glyph: a control character
/// other than tab, or an invisible format character that reorders or hides text (bidi
/// overrides and isolates, zero-width characters, the byte order mark).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// Appends `c` escaped C-style: `\n`, `\r`, `\t`, `\a`, `\b`, `\f`, `\v`, else each byte of
/// its UTF-8 form in octal (`\033` for escape), as git does.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\u{b}' => out.push_str("\\v"),
        _ => {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "\\{byte:03o}");
            }
        }
    }
}

/// A file, branch or tag name as text output shows it: as it is when it is plain, else in
/// double quotes with `"`, `\`, tabs, control and invisible format characters escaped C-style
/// (`x\n M evil` shows as `"x\n M evil"`), so that it stays one token on one line and cannot
/// be mistaken for a plain name.
pub fn quote_name(name: &str) -> Cow<'_, str> {
    if !name
        .chars()
        .any(|c| is_unsafe(c) || matches!(c, '"' | '\\' | '\t'))
    {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) || c == '\t' => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Free text (a commit message line, an author, a table cell, an error) with its control
/// and invisible format characters escaped C-style, newlines included; everything else,
/// tabs and backslashes too, as it is.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_as_they_are() {
        for name in ["a.txt", "dir/sub file", "été", "日本語", "-rf"] {
            assert!(matches!(quote_name(name), Cow::Borrowed(_)), "{name}");
        }
    }

    #[test]
    fn names_with_control_characters_are_quoted_like_git() {
        assert_eq!(quote_name("x\n M evil"), r#""x\n M evil""#);
        assert_eq!(quote_name("a\tb"), r#""a\tb""#);
        assert_eq!(quote_name("bell\u{7}\u{1b}[2J"), r#""bell\a\033[2J""#);
        assert_eq!(quote_name("cr\rlf"), r#""cr\rlf""#);
        assert_eq!(quote_name("del\u{7f}"), r#""del\177""#);
        assert_eq!(quote_name("c1\u{9b}"), r#""c1\302\233""#);
        assert_eq!(
            quote_name("rtl\u{202e}txt.exe"),
            r#""rtl\342\200\256txt.exe""#
        );
    }

    #[test]
    fn quotes_and_backslashes_in_names_are_escaped_so_quoting_is_unambiguous() {
        assert_eq!(quote_name(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote_name(r"back\slash"), r#""back\\slash""#);
        // A file literally named like a quoted name does not look like one.
        assert_eq!(quote_name(r#""x\n""#), r#""\"x\\n\"""#);
    }

    #[test]
    fn text_has_only_its_control_characters_escaped() {
        assert_eq!(escape_text("fine"), "fine");
        assert_eq!(
            escape_text(r#"C:\path "quoted"	tab"#),
            r#"C:\path "quoted"	tab"#
        );
        assert_eq!(
            escape_text("ok\r[master 0000] forged\u{1b}[1A"),
            r"ok\r[master 0000] forged\033[1A"
        );
        assert_eq!(escape_text("two\nlines"), r"two\nlines");
    }
}
