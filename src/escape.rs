//! Making arbitrary bytes safe to print on one line of a terminal or a log.
//!
//! A client may send anything: NUL, newlines, ESC sequences that would drive
//! the operator's terminal, invalid UTF-8, Unicode that reorders the line
//! when displayed. Printable text passes through; everything else becomes a
//! visible escape, so a log line stays one line and shows what was sent.

use std::fmt::Write;

/// Appends `bytes` to `out`, escaped:
/// - `\t`, `\n`, `\r`, `\\` and `\"` for those characters;
/// - `\xHH` for other ASCII controls, DEL and every byte of invalid UTF-8;
/// - `\u{HHHH}` for C1 controls and the Unicode characters that break or
///   reorder a line (line and paragraph separators, bidirectional controls,
///   byte order mark).
///
/// Everything else, including printable non-ASCII text, is kept as it is.
pub(crate) fn escape_into(out: &mut String, bytes: &[u8]) {
    if let Some(plain) = plain_ascii(bytes) {
        out.push_str(plain);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(out, c);
        }
        for byte in chunk.invalid() {
            push_hex_byte(out, *byte);
        }
    }
}

/// Returns `bytes` escaped as a new string (see [`escape_into`]).
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(&mut out, bytes);
    out
}

/// The common case, printable ASCII with nothing to escape, without decoding.
fn plain_ascii(bytes: &[u8]) -> Option<&str> {
    let plain = bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"');
    if plain {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        c if c.is_ascii_control() => push_hex_byte(out, c as u8),
        c if must_escape(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Non-ASCII characters that a terminal would act on rather than show.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{200e}' | '\u{200f}' // left-to-right and right-to-left marks
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}' // byte order mark, invisible
        )
}

fn push_hex_byte(out: &mut String, byte: u8) {
    let _ = write!(out, "\\x{byte:02x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escape(b"hola, que hora es?"), "hola, que hora es?");
        assert_eq!(
            escape("¿Qué hora es? 時間".as_bytes()),
            "¿Qué hora es? 時間"
        );
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn line_breakers_and_quotes_are_escaped() {
        assert_eq!(escape(b"a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape(b"say \"hi\" \\o/"), "say \\\"hi\\\" \\\\o/");
    }

    #[test]
    fn controls_nul_esc_and_del_become_hex() {
        assert_eq!(escape(b"\0\x1b[31mred\x7f"), "\\x00\\x1b[31mred\\x7f");
    }

    #[test]
    fn invalid_utf8_becomes_hex() {
        assert_eq!(escape(b"\xff\xfeok\xc3"), "\\xff\\xfeok\\xc3");
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(escape("\u{9b}31m".as_bytes()), "\\u{009b}31m");
        assert_eq!(escape("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        assert_eq!(escape("x\u{2028}y".as_bytes()), "x\\u{2028}y");
    }

    #[test]
    fn every_byte_value_escapes_to_printable_ascii_or_text() {
        let all: Vec<u8> = (0..=255).collect();
        let escaped = escape(&all);
        assert!(escaped.chars().all(|c| !c.is_control() && !must_escape(c)));
    }
}
