//! Standard input as messages, one per line, each of bounded size, so that
//! memory stays bounded whatever the input holds (`cat /dev/zero | cli6`).

use std::io::{self, BufRead, Read};

/// The longest message a line may hold. A longer line is read to its end
/// and dropped without being kept, so cli6 never holds more than this.
pub(crate) const MAX_LINE: usize = 16 << 20;

/// What the next line of input was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A message and its LF are in the buffer; a CR before the LF is gone.
    Message,
    /// The line was longer than [`MAX_LINE`]; the buffer is empty.
    TooLong,
    /// No more input.
    End,
}

/// Reads the next line into `buf`, replacing what it held. A last line
/// without an LF gets one.
pub(crate) fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    // The LF and a CR before it are not part of the message: one byte
    // more than those and the longest message is too long.
    input.by_ref().take(MAX_LINE as u64 + 3).read_until(b'\n', buf)?;
    if buf.is_empty() {
        return Ok(Line::End);
    }
    if buf.ends_with(b"\r\n") {
        buf.remove(buf.len() - 2);
    } else if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_LINE + 2 {
            // The rest of the line, dropped a piece at a time.
            let mut rest = Vec::new();
            while input.by_ref().take(1 << 16).read_until(b'\n', &mut rest)? > 0
                && rest.last() != Some(&b'\n')
            {
                rest.clear();
            }
        }
        buf.push(b'\n');
    }
    if buf.len() > MAX_LINE + 1 {
        *buf = Vec::new();
        return Ok(Line::TooLong);
    }
    Ok(Line::Message)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(Line, Vec<u8>)> {
        let mut reader = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let line = read_line(&mut reader, &mut buf).unwrap();
            if line == Line::End {
                return out;
            }
            out.push((line, buf));
        }
    }

    #[test]
    fn lines_keep_their_lf_and_lose_a_cr_before_it() {
        let got = lines(b"uno\r\ndos\n\ntres");
        let want: Vec<(Line, Vec<u8>)> = [&b"uno\n"[..], b"dos\n", b"\n", b"tres\n"]
            .iter()
            .map(|l| (Line::Message, l.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(lines(b"x\r\r\n"), [(Line::Message, b"x\r\n".to_vec())]);
    }

    #[test]
    fn an_endless_line_is_dropped_without_being_kept() {
        let mut input = vec![b'x'; MAX_LINE + 3];
        input.extend_from_slice(b"\nok\n");
        let got = lines(&input);
        assert_eq!(got[0], (Line::TooLong, Vec::new()));
        assert_eq!(got[1], (Line::Message, b"ok\n".to_vec()));
        assert_eq!(lines(&input[..MAX_LINE + 3]), [(Line::TooLong, Vec::new())]);
        let mut exact = vec![b'x'; MAX_LINE];
        exact.extend_from_slice(b"\r\n");
        assert_eq!(lines(&exact)[0].0, Line::Message);
    }
}
