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
/// - `\u{HHHH}` for C1 controls and every Unicode character that a
///   terminal or editor would render invisibly, or that breaks or reorders
///   a line: the format characters and the line and paragraph separators
///   (see [`must_escape`]).
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

/// Characters a terminal or an editor would act on, render invisibly or
/// reorder, rather than show: those of the Unicode general categories Cc
/// (controls), Cf (format characters: bidirectional marks, embeddings and
/// isolates, zero-width characters, the Arabic letter mark, the byte order
/// mark, interlinear annotations, ...), Zl and Zp (line and paragraph
/// separators). Decided by property, not by a hand list: the table is
/// `scripts/invisible-chars.py`'s output (Unicode 14.0.0), and a test walks the
/// whole code space against it.
fn must_escape(c: char) -> bool {
    INVISIBLE
        .binary_search_by(|&(first, last)| {
            if c < first {
                std::cmp::Ordering::Greater
            } else if c > last {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Ranges of escaped characters, in order (see [`must_escape`]).
const INVISIBLE: [(char, char); 23] = [
    ('\u{0000}', '\u{001f}'),
    ('\u{007f}', '\u{009f}'),
    ('\u{00ad}', '\u{00ad}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061c}', '\u{061c}'),
    ('\u{06dd}', '\u{06dd}'),
    ('\u{070f}', '\u{070f}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08e2}', '\u{08e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{2028}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{13438}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

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
    fn format_characters_are_escaped_by_property() {
        // U+061C ARABIC LETTER MARK, U+200B ZERO WIDTH SPACE, U+2060 WORD
        // JOINER, U+FEFF and U+FFF9: format characters (Cf), invisible.
        for c in ['\u{61c}', '\u{200b}', '\u{2060}', '\u{feff}', '\u{fff9}'] {
            let escaped = escape(format!("a{c}b").as_bytes());
            assert_eq!(escaped, format!("a\\u{{{:04x}}}b", u32::from(c)));
        }
        assert_eq!(
            escape("a\u{a0}b".as_bytes()),
            "a\u{a0}b",
            "a no-break space shows"
        );
    }

    #[test]
    fn the_table_is_the_unicode_database_walked_whole() {
        let Ok(out) = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/invisible-chars.py"
            ))
            .output()
        else {
            println!("skipped: python3 is needed for its Unicode database");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let want: Vec<(u32, u32)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (a, b) = l.split_once(' ')?;
                Some((
                    u32::from_str_radix(a, 16).ok()?,
                    u32::from_str_radix(b, 16).ok()?,
                ))
            })
            .collect();
        let version = text.lines().next().unwrap_or_default();
        if !version.contains("14.0") {
            println!("skipped: python3 has {version}; the table is of Unicode 14.0");
            return;
        }
        let have: Vec<(u32, u32)> = INVISIBLE
            .iter()
            .map(|&(a, b)| (a.into(), b.into()))
            .collect();
        assert_eq!(
            have, want,
            "regenerate the table with scripts/invisible-chars.py"
        );
        let in_table = |cp: u32| want.iter().any(|&(a, b)| (a..=b).contains(&cp));
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(must_escape(c), in_table(c.into()), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn every_byte_value_escapes_to_printable_ascii_or_text() {
        let all: Vec<u8> = (0..=255).collect();
        let escaped = escape(&all);
        assert!(escaped.chars().all(|c| !c.is_control() && !must_escape(c)));
    }
}
