//! How apps read a request path, and what the shipped policy
//! (`examples/portcullis.toml`) admits: the oracle of the differential and
//! property tests.

use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Nobody,
    /// Signed in, in `family` and `photos`, not in `admins`.
    Alice,
}

/// Every path an app may serve for `target`: each combination of the ways
/// apps read a path.
pub fn readings(target: &str) -> BTreeSet<String> {
    let raw = target.split('?').next().unwrap_or("");
    type Step = fn(&str) -> String;
    let steps: [Step; 7] = [
        |p| p.split('#').next().unwrap_or("").to_string(),
        |p| String::from_utf8_lossy(&percent_decode(p.as_bytes())).into_owned(),
        |p| p.split('/').map(|s| s.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/"),
        |p| p.replace('\\', "/"),
        resolve_dots,
        |p| p.split('/').map(|s| s.trim_end_matches(['.', ' '])).collect::<Vec<_>>().join("/"),
        |p| p.to_lowercase(),
    ];
    let mut out = BTreeSet::new();
    for mask in 0..(1u32 << steps.len()) {
        let mut p = raw.to_string();
        for (i, step) in steps.iter().enumerate() {
            if mask & (1 << i) != 0 {
                p = step(&p);
            }
        }
        out.insert(p);
    }
    out
}

pub fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 3986 dot-segment removal, with empty segments collapsed.
pub fn resolve_dots(p: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let trailing = p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..");
    let mut out = format!("/{}", stack.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

/// The shipped policy, for one clean path.
pub fn admitted(path: &str, who: Who) -> bool {
    // Repeated slashes are one (as portcullis's policy reads them, and as
    // apps and proxies serve them).
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    let path = collapsed.as_str();
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    match who {
        Who::Nobody => path.starts_with("/public/"),
        Who::Alice => !under("/admin"),
    }
}

