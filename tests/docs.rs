//! The book under docs/ (and README) kept true, without mdBook:
//!
//! - every link between its pages, and into the repository from README
//!   (and bench/ and fuzz/'s notes), leads to a file that exists, and
//!   every `#anchor` to a heading there;
//! - every page of docs/src is in SUMMARY.md;
//! - the configuration reference (docs/src/configuration.md) names every
//!   configuration key the code accepts, and no key it does not: the keys
//!   are asked of the configuration loader itself, which names the keys
//!   it expects when it meets one it does not know;
//! - the family example page shows examples/identity.toml as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn book() -> PathBuf {
    repo().join("docs/src")
}

/// Every `.md` file under `dir`, sorted.
fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(pages(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The lines of a Markdown page outside fenced code blocks, with their
/// numbers (from 1).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` without its inline code spans (a link written in code is no link).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` on a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("").to_string();
        out.push(target);
        rest = &after[end..];
    }
    out
}

/// A heading's anchor as mdBook (and GitHub) make it: the heading's text
/// without Markdown, in lower case, letters, digits, `-` and `_` kept,
/// white space turned into `-`, the rest dropped.
fn anchor(heading: &str) -> String {
    // Link text stays, its target goes.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(i) = rest.find("](") {
        text.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    text.push_str(rest);
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_lowercase().next().unwrap())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The anchors of a page's headings; a repeated one gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let id = anchor(line[hashes..].trim());
            let n = seen.entry(id.clone()).or_insert(0);
            out.insert(if *n == 0 { id.clone() } else { format!("{id}-{n}") });
            *n += 1;
        }
    }
    out
}

/// Problems with the links of the page at `path`; links from the book
/// must stay inside docs/src (mdBook copies nothing else).
fn broken_links(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let in_book = path.starts_with(book());
    let shown = path.strip_prefix(repo()).unwrap().display().to_string();
    let mut problems = Vec::new();
    for (n, line) in prose(&text) {
        for target in link_targets(line) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if file.is_empty() { path.to_path_buf() } else { path.parent().unwrap().join(file) };
            let Ok(dest) = dest.canonicalize() else {
                problems.push(format!("{shown}:{n}: `{target}` leads to no file"));
                continue;
            };
            if in_book && !dest.starts_with(book().canonicalize().unwrap()) {
                problems.push(format!(
                    "{shown}:{n}: `{target}` leaves docs/src, which the built book does not have: name the file in code instead"
                ));
                continue;
            }
            if let Some(fragment) = fragment {
                let page = std::fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&page).contains(fragment) {
                    problems.push(format!(
                        "{shown}:{n}: `{target}`: {} has no heading with the anchor `#{fragment}`",
                        dest.strip_prefix(repo().canonicalize().unwrap()).unwrap_or(&dest).display()
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    for page in ["README.md", "bench/README.md", "fuzz/README.md", "fuzz/RESULTS.md"] {
        problems.extend(broken_links(&repo().join(page)));
    }
    for page in pages(&book()) {
        problems.extend(broken_links(&page));
    }
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn every_page_is_in_the_summary() {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = summary.lines().flat_map(link_targets).collect();
    let missing: Vec<String> = pages(&book())
        .iter()
        .map(|p| p.strip_prefix(book()).unwrap().display().to_string())
        .filter(|p| p != "SUMMARY.md" && !listed.contains(p))
        .collect();
    assert!(missing.is_empty(), "pages of docs/src that SUMMARY.md does not list: {missing:?}");
}

#[test]
fn the_checker_finds_broken_links_and_anchors() {
    let dir = book().join("proxies");
    let page = dir.join("nginx.md");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(anchors(&text).contains("sign-in-on-its-own-host"));
    assert_eq!(anchor("`[[identity.rules]]` (first match wins)"), "identityrules-first-match-wins");
    assert_eq!(anchor("1. Register portcullis"), "1-register-portcullis");
    assert_eq!(anchors("# A\n```\n# not a heading\n```\n## A\n"), BTreeSet::from(["a".to_string(), "a-1".to_string()]));
    assert_eq!(
        link_targets("see [x](a.md#b), `[not](a link)` and [y](https://e.example/)"),
        vec!["a.md#b".to_string(), "https://e.example/".to_string()]
    );
    // A broken page, written beside the real ones and removed at once.
    let probe = dir.join("zz-docs-test-probe.md");
    std::fs::write(&probe, "[a](nginx.md#no-such-heading) [b](missing.md) [c](../../../Cargo.toml) [d](caddy.md)\n").unwrap();
    let problems = broken_links(&probe);
    std::fs::remove_file(&probe).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("no heading with the anchor `#no-such-heading`"), "{problems:?}");
    assert!(problems[1].contains("leads to no file"), "{problems:?}");
    assert!(problems[2].contains("leaves docs/src"), "{problems:?}");
}

// ---- configuration keys ----

/// One step of a key's path: a table's key, or "any item" of a list.
#[derive(Clone)]
enum Step {
    Key(String),
    Item,
}

const PROBE: &str = "zz_docs_probe";

/// The key as the reference writes it: `identity.rules[].user`.
fn written(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Item => out.push_str("[]"),
        }
    }
    out
}

/// The key as the loader names it in an error: `identity.rules.0.user`.
fn as_loaded(path: &[Step]) -> String {
    path.iter().map(|s| if let Step::Key(k) = s { k.clone() } else { "0".to_string() }).collect::<Vec<_>>().join(".")
}

/// What the loader answers to a configuration holding, at `path`, one
/// unknown key.
fn probe(path: &[Step]) -> String {
    let mut value = format!("{{ {PROBE} = 1 }}");
    for step in path.iter().skip(1).rev() {
        value = match step {
            Step::Key(k) => format!("{{ {k} = {value} }}"),
            Step::Item => format!("[ {value} ]"),
        };
    }
    let toml = match path.first() {
        None => format!("{PROBE} = 1\n"),
        Some(Step::Key(k)) => format!("{k} = {value}\n"),
        Some(Step::Item) => unreachable!("the configuration is a table"),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.toml");
    std::fs::write(&file, toml).unwrap();
    match portcullis::config::Config::load(Some(&file)) {
        Ok(_) => panic!("a configuration with the unknown key {} was accepted", as_loaded(path)),
        Err(e) => e.to_string(),
    }
}

/// The keys a table at `path` knows, when the loader names them.
fn fields(path: &[Step]) -> Option<Vec<String>> {
    let error = probe(path);
    let key = if path.is_empty() { PROBE.to_string() } else { format!("{}.{PROBE}", as_loaded(path)) };
    if !error.contains(&format!("key `{key}`")) {
        return None;
    }
    let (_, expected) = error.split_once("unknown field")?;
    let (_, expected) = expected.split_once("expected")?;
    let expected = expected.split(" (from").next().unwrap();
    Some(
        expected
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty() && !["one", "of", "or"].contains(w))
            .map(str::to_string)
            .collect(),
    )
}

/// Whether `path` holds a table whose keys are the user's (such as
/// `upstream_headers`): the loader went into it, named no keys, and did
/// not take the table for one of a choice's variants (`default_policy`).
fn open_table(path: &[Step]) -> bool {
    let error = probe(path);
    error.contains(&format!("key `{}.{PROBE}`", as_loaded(path))) && !error.contains("unknown variant")
}

/// Every configuration key the code accepts, as the reference writes it;
/// a table of the user's own keys as `name.*`.
fn known_keys(path: &mut Vec<Step>, out: &mut BTreeSet<String>) {
    let Some(names) = fields(path) else { return };
    for name in names {
        path.push(Step::Key(name));
        let before = out.len();
        if fields(path).is_some() {
            known_keys(path, out);
        } else {
            path.push(Step::Item);
            if fields(path).is_some() {
                known_keys(path, out);
            }
            path.pop();
        }
        if out.len() == before {
            if open_table(path) {
                out.insert(format!("{}.*", written(path)));
            } else {
                // A value the loader refused names its key; a table that
                // took the unknown key without a word lets misspelt keys
                // through, and hides its keys from this test.
                let error = probe(path);
                let key = as_loaded(path);
                assert!(
                    error.contains(&format!("key `{key}`")) || error.contains(&format!("key `{key}.")),
                    "`{}` accepts a key it does not know (the loader answered: {error}): give its section type \
                     #[serde(deny_unknown_fields)], as every section has, so that misspelt keys are refused",
                    written(path)
                );
                out.insert(written(path));
            }
        }
        path.pop();
    }
}

/// The keys the reference documents: the code spans of the first column
/// of every table whose first column is headed `key`.
fn documented_keys(reference: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_key_table = false;
    for (_, line) in prose(reference) {
        let Some(row) = line.trim().strip_prefix('|') else {
            in_key_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
            continue;
        }
        if !in_key_table || first.starts_with("---") {
            continue;
        }
        for (i, span) in first.split('`').enumerate() {
            if i % 2 == 1 {
                out.insert(span.to_string());
            }
        }
    }
    out
}

/// A documented key stands for a known one when it is the same, or a key
/// inside a table of the user's own keys (`upstream_headers.USER.NAME`
/// for `upstream_headers.*`).
fn covers(documented: &str, known: &str) -> bool {
    match known.strip_suffix(".*") {
        Some(table) => documented.strip_prefix(table).is_some_and(|rest| rest.starts_with('.')),
        None => documented == known,
    }
}

#[test]
fn the_configuration_reference_names_every_key_and_no_other() {
    let mut known = BTreeSet::new();
    known_keys(&mut Vec::new(), &mut known);
    // The loader's own description, checked so that the probing itself
    // cannot silently find nothing.
    for key in ["listen", "oidc.issuer", "session.keys_file", "identity.rules[].user", "policy[].action", "upstream_headers.*"]
    {
        assert!(known.contains(key), "the probe did not find `{key}` among {known:?}");
    }
    let reference = std::fs::read_to_string(book().join("configuration.md")).unwrap();
    let documented = documented_keys(&reference);
    let mut problems = Vec::new();
    for key in &known {
        if !documented.iter().any(|d| covers(d, key)) {
            let shown = key.replace(".*", ".NAME");
            problems.push(format!(
                "the code accepts `{shown}` but docs/src/configuration.md does not document it: add a row \
                 \"| `{shown}` | default | meaning |\" to the table of its section"
            ));
        }
    }
    for key in &documented {
        if !known.iter().any(|k| covers(key, k)) {
            problems.push(format!(
                "docs/src/configuration.md documents `{key}`, which the code does not accept: remove the row, or correct the key"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reference_reader_sees_rows_and_wildcards() {
    let page = "| key | default |\n|---|---|\n| `a.b` / `a.b_file` | `1` |\n\n| header | x |\n|---|---|\n| `Not-A-Key` | |\n";
    assert_eq!(documented_keys(page), BTreeSet::from(["a.b".to_string(), "a.b_file".to_string()]));
    assert!(covers("upstream_headers.USER.NAME", "upstream_headers.*"));
    assert!(!covers("upstream_headersx", "upstream_headers.*"));
    assert!(!covers("oidc.issuerx", "oidc.issuer"));
}

#[test]
fn the_family_example_page_shows_the_example_file() {
    let page = std::fs::read_to_string(book().join("identity.md")).unwrap();
    let file = std::fs::read_to_string(repo().join("examples/identity.toml")).unwrap();
    assert!(
        page.contains(&format!("```toml\n{file}```")),
        "docs/src/identity.md does not show examples/identity.toml as it is now: paste the file into it again"
    );
}

/// README stays a front page: short, and the first two commands it shows
/// are the demo and the test suite.
#[test]
fn readme_starts_with_the_demo_and_the_tests() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines: move the detail into the book under docs/src");
    let (_, after) = readme.split_once("```sh\n").expect("README shows commands in a ```sh block");
    let commands: Vec<&str> = after
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    assert_eq!(commands, ["cargo run --release --example demo", "scripts/test"], "README's first commands");
}

/// Each provider page says what to register (the callback URI at least),
/// how groups or roles arrive, and what happens at sign-out.
#[test]
fn every_provider_page_covers_registration_groups_and_sign_out() {
    let mut problems = Vec::new();
    for page in pages(&book().join("providers")) {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(book()).unwrap().display().to_string();
        if !text.contains("/oauth2/callback") {
            problems.push(format!("{name} does not name the redirect URI /oauth2/callback"));
        }
        if !text.contains("signed-out") {
            problems.push(format!("{name} does not say whether to register /oauth2/signed-out"));
        }
        let headings: Vec<String> = prose(&text)
            .into_iter()
            .filter(|(_, l)| l.starts_with('#'))
            .map(|(_, l)| l.to_lowercase())
            .collect();
        for topic in ["register", "group", "sign-out"] {
            if !headings.iter().any(|h| h.contains(topic)) {
                problems.push(format!("{name} has no heading about {topic}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
