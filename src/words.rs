//! Wording for people: a count with its noun, `1 error`, `2 errors`.
//! Protocol lines (`received 1 bytes at ...`) are not people's text and
//! never come here: their grammar is fixed in `protocol`.

/// `n` and the noun that agrees with it.
pub(crate) fn counted(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(counted(0u64, "error", "errors"), "0 errors");
        assert_eq!(counted(1u64, "error", "errors"), "1 error");
        assert_eq!(counted(2u64, "reply", "replies"), "2 replies");
    }
}
