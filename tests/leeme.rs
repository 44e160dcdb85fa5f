//! LEEME.md, the Spanish front page, walks the original exercise's steps
//! through the examples and serv6's own code, naming each place as
//! "`path`: `function`" (or "`path`: `f`, `g`"). Code moves; these tests
//! make sure the walk moves with it.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every "`path.rs`: `name`, `name`" in `text`, outside code blocks, as
/// (path, names); a path named with no function has no names.
fn places(text: &str) -> Vec<(String, Vec<String>)> {
    let mut in_code = false;
    let prose: Vec<&str> = text
        .lines()
        .filter(|line| {
            in_code ^= line.trim_start().starts_with("```");
            !in_code && !line.trim_start().starts_with("```")
        })
        .collect();
    // Lines are wrapped anywhere: one space for any run of white space.
    let flat = prose.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    let mut rest = flat.as_str();
    while let Some((token, after)) = quoted(rest) {
        rest = after;
        if token.contains(' ') || !token.ends_with(".rs") {
            continue;
        }
        let mut names = Vec::new();
        let mut tail = after.strip_prefix(": ");
        // Each name must follow at once: "`path`: `f`, `g`".
        while let Some((name, after)) = tail.and_then(right_here) {
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
                break;
            }
            names.push(name.to_owned());
            rest = after;
            tail = after.strip_prefix(", ");
        }
        found.push((token.to_owned(), names));
    }
    found
}

/// The next text in backquotes in `s`, and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let (_, open) = s.split_once('`')?;
    open.split_once('`')
}

/// The text in backquotes that `s` starts with, and what follows it.
fn right_here(s: &str) -> Option<(&str, &str)> {
    s.strip_prefix('`')?.split_once('`')
}

#[test]
fn every_file_and_function_the_walk_names_exists() {
    let walk = places(&read("LEEME.md"));
    let mut named = 0;
    for (path, names) in &walk {
        let code = read(path);
        for name in names {
            let defined =
                code.contains(&format!("fn {name}(")) || code.contains(&format!("fn {name}<"));
            assert!(defined, "LEEME.md names {path}: {name}, but {path} has no fn {name}");
            named += 1;
        }
    }
    // A change of markup that the reader above missed must not pass as
    // an empty walk: the steps' main places are all there.
    for (path, name) in [
        ("examples/servidor.rs", "atender"),
        ("examples/cliente.rs", "preguntar"),
        ("src/server/listen.rs", "bind_each"),
        ("src/server/exchange.rs", "serve"),
        ("src/server/exchange.rs", "read"),
        ("src/platform/sockets.rs", "recv_now"),
        ("src/server/exchange.rs", "reply"),
        ("src/server/exchange/room.rs", "admit"),
        ("src/client/exchange.rs", "connect_any"),
        ("src/client/exchange.rs", "read_reply"),
    ] {
        let there = walk.iter().any(|(p, n)| p == path && n.iter().any(|n| n == name));
        assert!(there, "the walk no longer names {path}: {name}");
    }
    assert!(named >= 25, "only {named} functions named: {walk:?}");
}

#[test]
fn the_reader_finds_places_across_lines_and_lists() {
    let text = "En `src/a.rs`:\n   `uno`, `dos`: y `src/b.rs`: `tres()` y `c.rs`.\n\
                ```\n`src/d.rs`: `no`\n```\n`cargo run src/e.rs`";
    let found = places(text);
    let want = [("src/a.rs", &["uno", "dos"][..]), ("src/b.rs", &[]), ("c.rs", &[])];
    let want: Vec<(String, Vec<String>)> = want
        .iter()
        .map(|(p, n)| (p.to_string(), n.iter().map(|n| n.to_string()).collect()))
        .collect();
    assert_eq!(found, want);
}

#[test]
fn the_readme_links_the_spanish_front_page_which_stays_a_front_page() {
    let readme = read("README.md");
    let top: String = readme.lines().take(5).collect();
    assert!(top.contains("(LEEME.md)"), "README.md's top: {top}");
    let size = read("LEEME.md").len();
    assert!(size <= 10 * 1024, "LEEME.md is {size} bytes: keep it a front page");
}
