//! The docs (README.md, LEEME.md, docs/*.md and the manual texts beside
//! the programs) quote what serv6 and cli6 print, name files and
//! functions, and give commands. Code moves and messages change; these
//! tests keep the docs true to the repository, each failure naming the
//! doc, the line and the quote:
//!
//! - a quoted program message must still be text the code writes
//!   ([`writes`]);
//! - a path or link must lead to a file of the repository, and each
//!   function named with a file ("`path`: `f`, `g`") be defined there;
//! - a test or metric named by itself must exist;
//! - a command must run in a clone: nothing outside the repository, and
//!   after `make` only the Makefile's own targets.
//!
//! A quote is a program message if it starts as one (`serv6: `, `cli6: `,
//! `error: `, `received 4 bytes`) or enough of it is text src/ writes
//! ([`is_message`]); precision comes first: a quote the test does not take
//! for a message is not checked, but one it checks must be right.

use std::collections::HashSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The manual texts, read as docs: they quote messages in 'single quotes'.
const MANUALS: [&str; 2] = ["src/server/serv6.8.txt", "src/client/cli6.1.txt"];

/// A quote that starts so is a program message, whatever follows; so is
/// a reply, `received ` and a number.
const MESSAGE_STARTS: [&str; 3] = ["serv6: ", "cli6: ", "error: "];

/// Texts the operating system puts in messages (strerror's), which the
/// docs quote as a program printed them: pieces of what the code writes.
const SYSTEM_TEXTS: [&str; 3] = ["No space left on device", "File too large", "Broken pipe"];

/// Where the repository's own paths start.
const TOP: [&str; 8] =
    ["src/", "tests/", "contrib/", "docs/", "scripts/", "examples/", "benches/", ".ci/"];
const TOP_FILES: [&str; 4] = ["Makefile", "Cargo.toml", "README.md", "LEEME.md"];

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of every `.rs` file under `dir`.
fn sources(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(Path::new(ROOT).join(&dir)).expect(&dir) {
            let path = format!("{dir}/{}", entry.expect(&dir).file_name().to_string_lossy());
            if path.ends_with(".rs") {
                found.push(read(&path));
            } else if Path::new(ROOT).join(&path).is_dir() {
                dirs.push(path);
            }
        }
    }
    found
}

/// Every doc, by its path from the root.
fn docs() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|entry| format!("docs/{}", entry.expect("docs/").file_name().to_string_lossy()))
        .filter(|path| path.ends_with(".md"))
        .collect();
    docs.sort();
    ["README.md", "LEEME.md"].iter().chain(&MANUALS).map(|p| p.to_string()).chain(docs).collect()
}

// ---------------------------------------------------------------------------
// Reading the docs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// In `backquotes` or "double quotes" (a manual's 'single quotes').
    Quoted,
    /// A line of a ```sh block, its comment left out.
    Command,
    /// A line of a ```text block: what a program printed.
    Output,
}

/// One quote of a doc: where it starts, its text with any run of white
/// space as one space, and the doc's text after it.
#[derive(Debug)]
struct Span<'a> {
    line: usize,
    text: String,
    kind: Kind,
    after: &'a str,
}

/// `s` with each run of white space as one space, as docs wrap lines.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_whitespace() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out
}

fn flat(s: &str) -> String {
    squeeze(s).trim().to_owned()
}

/// The quotes of a doc: the lines of its sh and text blocks (other code
/// blocks are not read), then, outside blocks, what it quotes.
fn spans<'a>(text: &'a str, manual: bool) -> Vec<Span<'a>> {
    let mut found = Vec::new();
    // The prose: the text with its code blocks blanked, line for line.
    let mut prose = String::with_capacity(text.len());
    let mut block: Option<Option<Kind>> = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        if let Some(Some(kind)) = block.filter(|_| fence.is_none()) {
            let shown =
                if kind == Kind::Command { line.split(" #").next().unwrap_or("") } else { line };
            if !shown.trim().is_empty() {
                found.push(Span { line: n + 1, text: flat(shown), kind, after: "" });
            }
        }
        if let Some(fence) = fence {
            let kind = match fence.trim() {
                "sh" => Some(Kind::Command),
                "text" => Some(Kind::Output),
                _ => None,
            };
            block = if block.is_some() { None } else { Some(kind) };
        }
        let blank = fence.is_some() || block.is_some();
        for c in line.chars() {
            // Blanked byte for byte, so that offsets in the prose are the text's.
            let blanked = if blank && c != '\n' { c.len_utf8() } else { 0 };
            if blanked > 0 {
                prose.push_str(&" ".repeat(blanked));
            } else {
                prose.push(c);
            }
        }
    }
    let mut at = 0;
    while let Some((open, close)) = next_quote(&prose, at, manual) {
        let quote = &prose[open + 1..close];
        // A quote ends with its paragraph: one that seems to go on is not one.
        if !quote.split('\n').skip(1).any(|l| l.trim().is_empty()) {
            let line = prose[..open].matches('\n').count() + 1;
            found.push(Span {
                line,
                text: flat(quote),
                kind: Kind::Quoted,
                after: &text[close + 1..],
            });
        }
        at = close + 1;
    }
    found
}

/// The next quote in `text` from `at`, as the offsets of its two marks:
/// backquotes or double quotes, or, in a manual, single quotes that are
/// not apostrophes.
fn next_quote(text: &str, at: usize, manual: bool) -> Option<(usize, usize)> {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let is_mark = |i: usize, c: char| match c {
        '\'' if manual => !word(text[..i].chars().next_back()),
        '`' | '"' => !manual,
        _ => false,
    };
    let (open, mark) = text[at..].char_indices().find(|&(i, c)| is_mark(at + i, c))?;
    let open = at + open;
    let close = text[open + 1..].char_indices().find(|&(i, c)| {
        c == mark && (mark != '\'' || !word(text[open + 2 + i..].chars().next()))
    })?;
    Some((open, open + 1 + close.0))
}

// ---------------------------------------------------------------------------
// Program messages

/// The text of each string literal in Rust source, escapes undone.
fn literals(source: &str) -> Vec<String> {
    let b = source.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let before = if i > 0 { b[i - 1] } else { b' ' };
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => i = until(source, i, "\n"),
            b'/' if b.get(i + 1) == Some(&b'*') => i = until(source, i, "*/"),
            // A char literal ('"', '\'', 'é'), or else a lifetime.
            b'\'' => {
                let len = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1) == Some(&b'\\') {
                    i = until(source, i + 3, "'");
                } else if b.get(i + 1 + len) == Some(&b'\'') {
                    i += len + 2;
                } else {
                    i += 1;
                }
            }
            b'r' if !before.is_ascii_alphanumeric() && before != b'_' => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) == Some(&b'"') {
                    let close = format!("\"{}", "#".repeat(hashes));
                    let start = i + 2 + hashes;
                    i = until(source, start, &close);
                    found.push(source[start..i - close.len()].to_owned());
                } else {
                    i += 1;
                }
            }
            b'"' => {
                let (text, end) = quoted(source, i);
                found.push(text);
                i = end;
            }
            _ => i += 1,
        }
    }
    found
}

/// The text of the string literal whose opening quote is at `start`,
/// escapes undone, and the index just past its closing quote.
fn quoted(source: &str, start: usize) -> (String, usize) {
    let mut text = String::new();
    let mut chars = source[start + 1..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (text, start + at + 2),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => text.push('\n'),
                Some(c @ ('"' | '\\' | '\'')) => text.push(c),
                // A line continued: its next line's indent is not text.
                Some('\n') => {
                    let indent = chars.as_str().chars().take_while(|c| c.is_whitespace());
                    for _ in 0..indent.count() {
                        chars.next();
                    }
                }
                // \t, \0, \x1b, \u{...}: nothing a doc quotes.
                _ => text.push('\u{0}'),
            },
            c => text.push(c),
        }
    }
    (text, source.len())
}

/// Just past the first `end` in `source` after `from`, or its end.
fn until(source: &str, from: usize, end: &str) -> usize {
    source[from..].find(end).map_or(source.len(), |at| from + at + end.len())
}

/// What src/ writes, as pieces: see [`pieces_of`]. A unit test's
/// strings are what it expects, not what the program writes.
fn code_pieces() -> HashSet<String> {
    let sources = sources("src");
    pieces_of(sources.iter().map(|s| s.split("mod tests {").next().unwrap_or(s)))
}

/// What Rust `sources` write, as pieces: their string literals cut at
/// format placeholders (`{}`, `{n:.1}`) and line ends, white space
/// squeezed; and [`SYSTEM_TEXTS`]. What a literal quotes, as help text
/// does ("is told 'error: server busy'"), is left out: it is not what
/// the code writes but what the help says it writes.
fn pieces_of<'a>(sources: impl Iterator<Item = &'a str>) -> HashSet<String> {
    let mut pieces: HashSet<String> = SYSTEM_TEXTS.iter().map(|t| t.to_string()).collect();
    for mut literal in sources.flat_map(literals) {
        while let Some((open, close)) = next_quote(&literal, 0, true) {
            literal.replace_range(open..=close, "\u{0}");
        }
        let literal = literal.replace("{{", "\u{1}").replace("}}", "\u{2}");
        let mut rest = literal.as_str();
        loop {
            let end = rest.find(['{', '\n', '\u{0}']).unwrap_or(rest.len());
            pieces.insert(squeeze(&rest[..end]).replace('\u{1}', "{").replace('\u{2}', "}"));
            let Some(cut) = rest.get(end..).filter(|r| !r.is_empty()) else { break };
            let skip = if cut.starts_with('{') { cut.find('}').unwrap_or(0) } else { 0 };
            rest = &cut[skip + 1..];
        }
    }
    pieces
}

/// The fixed text of a doc's quote: the runs between its placeholders.
/// A placeholder is `<N>`, `...`, a capital alone (`N bytes`), or a value:
/// a number, address or time (`4`, `[::1]:5006`, `2026-11-24T04:31:58Z`),
/// a run of such characters with a digit that does not go on a word
/// (`serv6`, `SIGUSR1` are text).
fn fragments(quote: &str) -> Vec<String> {
    let mut text = quote.replace("...", "\0").replace('…', "\0");
    while let Some((open, close)) = text.find('<').and_then(|o| Some((o, o + text[o..].find('>')?)))
    {
        text.replace_range(open..=close, "\0");
    }
    let value = |c: &char| c.is_ascii_hexdigit() || ".:%[]+-TZ".contains(*c);
    let chars: Vec<char> = text.chars().collect();
    let mut fixed = String::new();
    let mut i = 0;
    while i < chars.len() {
        let after_word = i > 0 && chars[i - 1].is_alphanumeric();
        let run = chars[i..].iter().take_while(|c| value(c)).count().max(1);
        let word_ends = chars.get(i + run).map_or(true, |c| !c.is_alphanumeric());
        let capital = run == 1 && chars[i].is_ascii_uppercase() && word_ends;
        let number = chars[i..i + run].iter().any(char::is_ascii_digit);
        if !after_word && (capital || number) {
            fixed.push('\0');
        } else {
            fixed.extend(&chars[i..i + run]);
        }
        i += run;
    }
    // A comma or colon before a value is the code's separator, not a word.
    let fixed = fixed.split('\0').map(|f| f.trim().trim_end_matches([',', ':', ';']));
    fixed.filter(|f| !f.is_empty()).map(str::to_owned).collect()
}

/// Whether `fragment` is text the code writes: inside one piece, or
/// pieces joined where the code joins them (each ends where a placeholder
/// or its literal does, and the next starts so), never inside a word, with
/// words at both ends: `error: ` + `message longer than `.
fn writes(fragment: &str, pieces: &HashSet<String>) -> bool {
    if pieces.iter().any(|p| p.contains(fragment)) {
        return true;
    }
    let wordy = |s: &str| s.chars().any(char::is_alphanumeric);
    let cuts: Vec<usize> = (1..fragment.len())
        .filter(|&i| fragment.is_char_boundary(i))
        .filter(|&i| {
            let before = fragment[..i].chars().next_back().is_some_and(char::is_alphanumeric);
            !(before && fragment[i..].starts_with(char::is_alphanumeric))
        })
        .collect();
    // Cuts up to which the fragment is pieces joined, the last one whole.
    let mut joined: Vec<usize> = Vec::new();
    for &cut in &cuts {
        let head = &fragment[..cut];
        let first = wordy(head) && pieces.iter().any(|p| p.ends_with(head));
        if first || joined.iter().any(|&j| pieces.contains(&fragment[j..cut])) {
            joined.push(cut);
        }
    }
    joined
        .iter()
        .any(|&j| wordy(&fragment[j..]) && pieces.iter().any(|p| p.starts_with(&fragment[j..])))
}

/// Whether a doc's quote is a program message: it starts as one, or
/// three of its words together are text the code writes, or, in a line of
/// counts (`42 served, 0 in progress, 3 held`), two are one piece of it.
fn is_message(quote: &str, pieces: &HashSet<String>) -> bool {
    let reply = quote
        .strip_prefix("received ")
        .is_some_and(|r| r.starts_with(|c: char| c == '<' || c.is_ascii_digit()));
    let fragments = fragments(quote);
    let words = |f: &String| f.split(' ').count();
    let counts = fragments.iter().map(words).sum::<usize>() >= 3
        && fragments.iter().any(|f| words(f) == 2 && pieces.iter().any(|p| p.contains(f.as_str())));
    reply
        || MESSAGE_STARTS.iter().any(|start| quote.starts_with(start))
        || fragments.iter().any(|f| words(f) >= 3 && writes(f, pieces))
        || counts
}

// ---------------------------------------------------------------------------
// Paths, functions and commands

/// The repository path a word of a quote names, if it names one: from
/// the root (`src/...`, `Makefile`), or a Rust file from src/
/// (`server/listen.rs`, as DESIGN.md names them).
fn repo_path(word: &str) -> Option<String> {
    let word = word.trim_start_matches('(').trim_end_matches([',', '.', ';', ':', ')']);
    if word.contains(['*', '$', '<', '=']) {
        None
    } else if TOP.iter().any(|top| word.starts_with(top)) || TOP_FILES.contains(&word) {
        Some(word.to_owned())
    } else if word.contains('/') && word.ends_with(".rs") && !word.starts_with('/') {
        Some(format!("src/{word}"))
    } else {
        None
    }
}

/// The names quoted right after a quoted path, as "`path`: `f`, `g`";
/// `after` is the doc's text after the path.
fn functions_after(after: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = after.strip_prefix(':');
    while let Some((name, after)) =
        rest.and_then(|r| r.trim_start().strip_prefix('`')?.split_once('`'))
    {
        names.push(name);
        rest = after.strip_prefix(',');
    }
    names
}

/// The Makefile's targets.
fn make_targets() -> HashSet<String> {
    let makefile = read("Makefile");
    let rules = makefile.lines().filter(|line| !line.starts_with(['\t', '#', '.', ' ']));
    let rules =
        rules.filter_map(|line| line.split_once(':')).filter(|(_, rest)| !rest.starts_with('='));
    rules
        .flat_map(|(names, _)| names.split_whitespace())
        .filter(|n| !n.contains('$'))
        .map(str::to_owned)
        .collect()
}

/// The targets a command asks make for: the words after a `make` that
/// starts a command, but its variables and flags.
fn make_goals(command: &str) -> Vec<&str> {
    let words: Vec<&str> = command.split(' ').collect();
    let mut goals = Vec::new();
    for (i, _) in words.iter().enumerate().filter(|(_, w)| **w == "make") {
        let starts = i == 0
            || ["sudo", "&&", "||", ";", "|"].contains(&words[i - 1])
            || words[i - 1].contains('=');
        let args = words[i + 1..]
            .iter()
            .take_while(|w| !w.starts_with(['&', '|', ';', '#', '>', '<', ')']));
        goals.extend(args.filter(|w| starts && !w.contains('=') && !w.starts_with('-')));
    }
    goals
}

/// What in a command points outside the repository: a `../`, or an
/// absolute path into the directory that holds the repository (where a
/// developer's other checkouts and tools are, and a clone has none).
fn outside(command: &str) -> Option<&str> {
    let parent = Path::new(ROOT).parent().and_then(Path::to_str).filter(|p| *p != "/");
    command.split(' ').find(|w| {
        let w = w.trim_start_matches(['(', '"', '\'']);
        w.contains("../") || parent.is_some_and(|p| w == p || w.starts_with(&format!("{p}/")))
    })
}

/// Each doc, its text, and whether it is a manual text.
fn each_doc() -> Vec<(String, String, bool)> {
    let doc = |path: String| {
        let (text, manual) = (read(&path), MANUALS.contains(&path.as_str()));
        (path, text, manual)
    };
    docs().into_iter().map(doc).collect()
}

// ---------------------------------------------------------------------------
// The tests

/// Fails with every line in `failures`, one per line.
fn assert_none(failures: &[String]) {
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
}

#[test]
fn every_program_message_the_docs_quote_is_one_the_code_writes() {
    let pieces = code_pieces();
    let (mut failures, mut checked) = (Vec::new(), 0);
    for (path, text, manual) in each_doc() {
        for span in spans(&text, manual) {
            if span.kind == Kind::Command || !is_message(&span.text, &pieces) {
                continue;
            }
            checked += 1;
            for fragment in fragments(&span.text).iter().filter(|f| !writes(f, &pieces)) {
                let (line, quote) = (span.line, &span.text);
                failures.push(format!("{path}:{line}: \"{quote}\": src/ writes no \"{fragment}\""));
            }
        }
    }
    assert_none(&failures);
    // A change of markup the reader missed must not pass as no quotes.
    assert!(checked >= 30, "only {checked} program messages found in the docs");
}

#[test]
fn every_path_and_link_the_docs_give_exists() {
    let mut failures = Vec::new();
    for (path, text, manual) in each_doc() {
        for span in spans(&text, manual).iter().filter(|s| s.kind != Kind::Output) {
            let words: Vec<&str> = span.text.split(' ').collect();
            let examples = words.windows(2).filter(|w| w[0] == "--example");
            let examples = examples.map(|w| format!("examples/{}.rs", w[1]));
            let paths = words.iter().filter_map(|w| repo_path(w)).chain(examples);
            for file in paths.filter(|file| !Path::new(ROOT).join(file).exists()) {
                failures.push(format!("{path}:{}: \"{}\": no {file}", span.line, span.text));
            }
        }
        let dir = Path::new(ROOT).join(&path).parent().map(Path::to_path_buf).unwrap_or_default();
        for (line, target) in links(&text) {
            if !dir.join(target).canonicalize().is_ok_and(|t| t.starts_with(ROOT)) {
                failures.push(format!("{path}:{line}: ({target}) is no file of the repository"));
            }
        }
    }
    assert_none(&failures);
}

/// A Rust file a quote names and the functions named with it, in either
/// form: "`path`: `f`, `g`" (`Type::f` is `f`), or "`path: f, g`".
fn functions_named(span: &Span) -> Option<(String, Vec<String>)> {
    let (file, names) = match span.text.split_once(": ") {
        Some((file, names)) => (file, names.split(", ").collect()),
        None => (span.text.as_str(), functions_after(span.after)),
    };
    let file = repo_path(file).filter(|f| f.ends_with(".rs") && !file.contains(' '))?;
    let is_name = |n: &&str| {
        !n.is_empty() && n.chars().all(|c| c == '_' || c == ':' || c.is_ascii_alphanumeric())
    };
    let names = names.into_iter().take_while(is_name);
    Some((file, names.map(|n| n.rsplit("::").next().unwrap_or(n).to_owned()).collect()))
}

#[test]
fn every_function_the_docs_name_with_its_file_is_defined_there() {
    let (mut failures, mut named) = (Vec::new(), Vec::new());
    for (path, text, manual) in each_doc() {
        for span in spans(&text, manual).iter().filter(|s| s.kind == Kind::Quoted) {
            let Some((file, names)) = functions_named(span) else { continue };
            let code = std::fs::read_to_string(Path::new(ROOT).join(&file)).unwrap_or_default();
            for name in names {
                if !code.contains(&format!("fn {name}(")) && !code.contains(&format!("fn {name}<"))
                {
                    let (line, quote) = (span.line, &span.text);
                    failures.push(format!("{path}:{line}: \"{quote}\": {file} has no fn {name}"));
                }
                named.push((path.clone(), file.clone(), name));
            }
        }
    }
    assert_none(&failures);
    // The walk of LEEME.md names the steps' main places: a change of
    // markup that the reader missed must not pass as an empty walk.
    for (file, name) in [
        ("examples/servidor.rs", "atender"),
        ("examples/cliente.rs", "preguntar"),
        ("src/server/listen.rs", "bind_each"),
        ("src/server/exchange.rs", "serve"),
        ("src/server/exchange.rs", "read"),
        ("src/platform/linux/sockets.rs", "recv_now"),
        ("src/server/exchange.rs", "hang_up"),
        ("src/server/exchange.rs", "reply"),
        ("src/server/exchange/room.rs", "admit"),
        ("src/client/exchange.rs", "connect_any"),
        ("src/client/exchange.rs", "read_reply"),
    ] {
        let there = named.iter().any(|(doc, f, n)| doc == "LEEME.md" && f == file && n == name);
        assert!(there, "LEEME.md's walk no longer names {file}: {name}");
    }
    assert!(named.len() >= 30, "only {} functions named: {named:?}", named.len());
}

/// The targets of a doc's Markdown links to files, by line.
fn links(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("](") {
        let target = text[at + 2..].split(')').next().unwrap_or("");
        let target = target.split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            found.push((text[..at].matches('\n').count() + 1, target));
        }
    }
    found
}

#[test]
fn every_command_the_docs_give_runs_in_a_clone() {
    let targets = make_targets();
    let mut failures = Vec::new();
    for (path, text, manual) in each_doc() {
        for span in spans(&text, manual).iter().filter(|s| s.kind != Kind::Output) {
            let (line, quote) = (span.line, &span.text);
            if let Some(word) = outside(quote) {
                failures
                    .push(format!("{path}:{line}: \"{quote}\": {word} is outside the repository"));
            }
            for goal in make_goals(quote).into_iter().filter(|g| !targets.contains(*g)) {
                failures
                    .push(format!("{path}:{line}: \"{quote}\": the Makefile has no target {goal}"));
            }
        }
    }
    assert_none(&failures);
}

#[test]
fn the_readme_links_the_spanish_front_page_and_both_stay_front_pages() {
    let readme = read("README.md");
    let top: String = readme.lines().take(5).collect();
    assert!(top.contains("(LEEME.md)"), "README.md's top: {top}");
    for page in ["README.md", "LEEME.md"] {
        let size = read(page).len();
        assert!(size <= 10 * 1024, "{page} is {size} bytes: keep it a front page");
    }
}

/// A test, or a metric, the docs name by itself: `a_flood_of_errors_...`,
/// `rules::max_conns_...`, `serv6_log_lines_queued` (four words at least,
/// so that std's `read_to_string` is not taken for one of ours).
fn named_alone(quote: &str) -> Option<&str> {
    let name = quote.rsplit("::").next()?;
    let ours =
        quote.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
    (ours && name.matches('_').count() >= 3).then_some(name)
}

#[test]
fn every_test_and_metric_the_docs_name_exists() {
    let code: Vec<String> = ["src", "tests", "benches"].iter().flat_map(|d| sources(d)).collect();
    let pieces = code_pieces();
    let (mut failures, mut named) = (Vec::new(), 0);
    for (path, text, manual) in each_doc() {
        for span in spans(&text, manual).iter().filter(|s| s.kind == Kind::Quoted) {
            let Some(name) = named_alone(&span.text) else { continue };
            named += 1;
            let defined = code.iter().any(|c| c.contains(&format!("fn {name}(")));
            if !defined && !pieces.iter().any(|p| p.contains(name)) {
                failures.push(format!(
                    "{path}:{}: \"{}\": no test or metric {name}",
                    span.line, span.text
                ));
            }
        }
    }
    assert_none(&failures);
    assert!(named >= 50, "only {named} tests and metrics named");
}

// ---------------------------------------------------------------------------
// The readers' own tests

#[test]
fn quotes_are_cut_at_their_placeholders() {
    assert_eq!(fragments("received <N> bytes at <T>"), ["received", "bytes at"]);
    assert_eq!(fragments("received 4 bytes at 2026-11-24T04:31:58.1Z"), ["received", "bytes at"]);
    assert_eq!(fragments("error: no message within S s"), ["error: no message within", "s"]);
    assert_eq!(
        fragments("serv6: listening on 127.0.0.1:5006, [::1]:5006 (metrics: http://[::1]:9806/m)"),
        ["serv6: listening on", "(metrics: http://", "/m)"]
    );
    assert_eq!(
        fragments("SIGUSR1: running for ... 9 exchanges served"),
        ["SIGUSR1: running for", "exchanges served"]
    );
    assert_eq!(fragments("cannot tell it READY=1 (...)"), ["cannot tell it READY=", "(", ")"]);
}

#[test]
fn a_quote_is_what_the_code_writes_only_where_the_code_joins_its_pieces() {
    let source = r#"
        writeln!(line, "error: {why}");
        const TOO_LONG: (&str, &str) = ("message longer than ", " bytes");
        notifier.insist("READY=1");
        format!("cannot tell the service manager {state} ({e}); going on without it");
        format!("cannot write the log: {error}; serving goes on, and the lines are counted");
        format!("({e})");
    "#;
    let pieces = pieces_of([source].into_iter());
    let written = |quote: &str| fragments(quote).iter().all(|f| writes(f, &pieces));
    assert!(written("error: message longer than 65536 bytes"));
    assert!(written("cannot tell the service manager READY=1 (...); going on without it"));
    assert!(written("cannot write the log: No space left on device; serving goes on"));
    // OPERATIONS.md quoted this, which serv6 never printed: caught.
    assert!(!written("cannot tell the service manager READY=1 (...); serving goes on"));
    assert!(!written("error: message too long"));
    assert!(!written("the service manager going on"), "pieces are joined only at their ends");
    assert!(!written("going on withoutREADY=1"), "never inside a word");
    assert!(is_message("cannot tell the service manager READY=1 (...)", &pieces));
    assert!(!is_message("make test", &pieces));
}

#[test]
fn literals_are_read_with_their_escapes_undone() {
    let source = r####"
        // "a comment"
        let c = '"'; let d = '\''; fn f<'a>(x: &'a str) {}
        let s = "say \"hi\"\n"; let r = r#"raw "one""#;
        let long = "at least {} \
                    to serve";
    "####;
    assert_eq!(literals(source), ["say \"hi\"\n", "raw \"one\"", "at least {} to serve"]);
}

#[test]
fn spans_are_read_across_lines_and_blocks_and_in_manuals() {
    let text = "En `src/a.rs`:\n   `uno`, `dos`: y\n`src/b.rs`: `tres()`.\n\
                ```sh\nmake test   # all of it\n```\n```text\nreceived 4 bytes\n```\n\
                ```ini\n`not read`\n```\nsays \"error: server\nbusy\" in `server/c.rs: f, T::g`";
    let found: Vec<_> = spans(text, false).into_iter().map(|s| (s.line, s.kind, s.text)).collect();
    let want = [
        (5, Kind::Command, "make test"),
        (8, Kind::Output, "received 4 bytes"),
        (1, Kind::Quoted, "src/a.rs"),
        (2, Kind::Quoted, "uno"),
        (2, Kind::Quoted, "dos"),
        (3, Kind::Quoted, "src/b.rs"),
        (3, Kind::Quoted, "tres()"),
        (13, Kind::Quoted, "error: server busy"),
        (14, Kind::Quoted, "server/c.rs: f, T::g"),
    ];
    assert_eq!(found, want.map(|(line, kind, text)| (line, kind, text.to_owned())));
    let named: Vec<_> = spans(text, false).iter().filter_map(functions_named).collect();
    let named: Vec<_> =
        named.iter().map(|(file, names)| (file.as_str(), names.join(" "))).collect();
    let want = [("src/a.rs", "uno dos"), ("src/b.rs", ""), ("src/server/c.rs", "f g")];
    assert_eq!(named, want.map(|(file, names)| (file, names.to_owned())));
    let manual = "the reply's line, 'error: message\nlonger than N bytes', it's";
    let found: Vec<_> = spans(manual, true).into_iter().map(|s| s.text).collect();
    assert_eq!(found, ["error: message longer than N bytes"]);
}

#[test]
fn commands_that_leave_the_repository_or_ask_make_for_no_target_are_found() {
    assert_eq!(outside("python3 ../tools/count.py src"), Some("../tools/count.py"));
    let beside = Path::new(ROOT).with_file_name("notes");
    let beside = beside.to_str().expect("a path in UTF-8");
    assert_eq!(outside(&format!("cat {beside}")), Some(beside));
    assert_eq!(outside("make test"), None);
    assert_eq!(make_goals("sudo make install PREFIX=/usr"), ["install"]);
    assert_eq!(make_goals("CI=true make test && make -j2 stress"), ["test", "stress"]);
    assert!(make_goals("make").is_empty() && make_goals("cargo make it").is_empty());
    assert!(make_targets().contains("servidor") && make_targets().contains("test-install"));
    assert_eq!(repo_path("(server/listen.rs,"), Some("src/server/listen.rs".to_owned()));
    assert_eq!(repo_path("target/release/cli6"), None);
}
