//! The code's floor plan, checked: the book's code map (docs/src/development.md)
//! lists every module of
//! `src/` in one of three layers, and the imports keep to them.
//!
//! - **leaves** import nothing from the crate;
//! - **subsystems** never import the top (the configuration loader, the
//!   server, `explain`, the compiled rules);
//! - no import cycle between modules.
//!
//! An import is any `crate::…` path in the code (comments and test modules
//! aside), and in a module with submodules, a path through one of them. A
//! submodule's `super::…` (a file using its own parent, which declares it)
//! is not an edge: a directory module is one unit to the rest of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers as the code map states them.
struct Map {
    leaves: BTreeSet<String>,
    subsystems: BTreeSet<String>,
    top: BTreeSet<String>,
}

/// Reads the three `- **layer** …: `a` (what it is), `b`, …` lines under
/// "Code map".
fn code_map(page: &str) -> Map {
    let section = page.split("## Code map").nth(1).expect("docs/src/development.md has a `## Code map` section");
    let layer = |name: &str| -> BTreeSet<String> {
        let line = section
            .lines()
            .find(|l| l.starts_with(&format!("- **{name}**")))
            .unwrap_or_else(|| panic!("the code map has no `- **{name}**` line"));
        // The modules are the `names` outside parentheses; what stands in
        // parentheses describes them.
        let mut depth = 0;
        let bare: String = line
            .chars()
            .filter(|&c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => return depth == 0,
                }
                false
            })
            .collect();
        bare.split('`').skip(1).step_by(2).map(str::to_string).collect()
    };
    Map { leaves: layer("leaves"), subsystems: layer("subsystems"), top: layer("top") }
}

/// Module path of a source file: `src/session/memory.rs` → `session::memory`.
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('/', "::");
    match s.strip_suffix("::mod") {
        Some(parent) => parent.to_string(),
        None => s,
    }
}

/// The code of a file without comments, string literals and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                // Skip a string literal (escapes included).
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            c => out.push(c),
        }
    }
    out
}

/// The modules `module` (with `text` as its code) imports, among `modules`.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code(text);
    let mut out = BTreeSet::new();
    // The longest known module a path names.
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").take_while(|p| p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && !p.is_empty()).collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| modules.contains(m))
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(after.len());
        if let Some(m) = resolve(&after[..end]) {
            out.insert(m);
        }
        rest = after;
    }
    // A module's own submodules, named relative to it.
    let children: Vec<String> = modules.iter().filter(|m| m.rsplit_once("::").is_some_and(|(p, _)| p == module)).cloned().collect();
    for child in children {
        let leaf = child.rsplit("::").next().unwrap();
        let named = code.match_indices(&format!("{leaf}::")).any(|(i, _)| {
            !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
        });
        if named {
            out.insert(child);
        }
    }
    out.remove(module);
    // A submodule naming its own parent (or grandparent) through `crate::`.
    out.retain(|d| !module.starts_with(&format!("{d}::")));
    out
}

/// Every module of `src/` and what it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
                files.push(path);
            }
        }
    }
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|f| (module_of(f.strip_prefix(&src).unwrap()), std::fs::read_to_string(f).unwrap()))
        .collect();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules.iter().map(|(m, text)| (m.clone(), imports(m, text, &names))).collect()
}

/// The top-level module a module belongs to (`session::memory` → `session`).
fn unit(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// What breaks the map's rules, one line each.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>, map: &Map) -> Vec<String> {
    let mut out = Vec::new();
    let units: BTreeSet<&str> = graph.keys().map(|m| unit(m)).collect();
    for u in &units {
        let listed = [&map.leaves, &map.subsystems, &map.top].iter().filter(|l| l.contains(*u)).count();
        if listed != 1 {
            out.push(format!("`{u}` is listed {listed} times in the code map (once, in one layer)"));
        }
    }
    for listed in map.leaves.iter().chain(&map.subsystems).chain(&map.top) {
        if !units.contains(listed.as_str()) {
            out.push(format!("the code map lists `{listed}`, which is not a module of src/"));
        }
    }
    for (m, deps) in graph {
        for d in deps {
            if unit(d) == unit(m) {
                continue;
            }
            if map.leaves.contains(unit(m)) {
                out.push(format!("leaf `{m}` imports `{d}`"));
            } else if map.subsystems.contains(unit(m)) && map.top.contains(unit(d)) {
                out.push(format!("subsystem `{m}` imports `{d}`, which is above it"));
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        out.push(format!("import cycle: {}", cycle.join(" → ")));
    }
    out
}

/// One import cycle, if there is any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == d).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(m, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn code_map_page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/development.md")).unwrap()
}

#[test]
fn the_code_keeps_to_the_code_map() {
    let problems = violations(&graph(), &code_map(&code_map_page()));
    assert!(problems.is_empty(), "The code map (docs/src/development.md) and src/ disagree:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_upward_imports_cycles_and_unlisted_modules() {
    let map = code_map(&code_map_page());
    let clean = graph();
    assert!(violations(&clean, &map).is_empty());
    let leaf = map.leaves.iter().next().unwrap().clone();
    let subsystem = map.subsystems.iter().next().unwrap().clone();

    // A leaf that imports something.
    let mut g = clean.clone();
    g.get_mut(&leaf).unwrap().insert(subsystem.clone());
    assert!(violations(&g, &map).iter().any(|v| v.starts_with(&format!("leaf `{leaf}` imports"))), "{:?}", violations(&g, &map));

    // A subsystem that imports the loader.
    let mut g = clean.clone();
    g.get_mut(&subsystem).unwrap().insert("config".into());
    assert!(violations(&g, &map).iter().any(|v| v.contains("which is above it")));

    // A cycle between two subsystems.
    let mut g = clean.clone();
    g.get_mut("policy").unwrap().insert("identity".into());
    g.get_mut("identity").unwrap().insert("policy".into());
    assert!(violations(&g, &map).iter().any(|v| v.starts_with("import cycle")));

    // A new module the map does not list.
    let mut g = clean;
    g.insert("newcomer".into(), BTreeSet::new());
    assert!(violations(&g, &map).iter().any(|v| v.contains("`newcomer` is listed 0 times")));
}

#[test]
fn imports_are_read_from_code_only() {
    let modules: BTreeSet<String> = ["a", "b", "c", "c::d", "e"].into_iter().map(String::from).collect();
    let text = "use crate::a::Thing; // crate::b is only mentioned\n\
                fn f() { let _ = \"crate::e\"; crate::c::d::g(); }\n\
                #[cfg(test)]\nmod tests { use crate::e; }\n";
    let got = imports("x", text, &modules);
    assert_eq!(got, ["a", "c::d"].into_iter().map(String::from).collect());
    // Submodules named relative to their parent count; the parent itself does not.
    let got = imports("c", "mod d;\npub fn f() { d::g() }\nuse super::x;\n", &modules);
    assert_eq!(got, ["c::d"].into_iter().map(String::from).collect());
}
