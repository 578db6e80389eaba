//! Comparing names the way people expect: group, role, user and email
//! names match case-insensitively, after the same normalisation on the
//! configuration side and the token side.
//!
//! Normalising trims surrounding white space and lower-cases (Unicode), so
//! `Family-Members`, `family-members` and a GUID in any case compare equal.
//! Group names that are Keycloak full paths (`/family/kids`) are further
//! reduced according to [`GroupPaths`].

use serde::{Deserialize, Serialize};

/// How Keycloak-style full-path group names (`/family/kids`) are matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPaths {
    /// By full path: `/family/kids` matches only `/family/kids`. A top-level
    /// group's path (`/family`) also matches its plain name (`family`),
    /// which is unambiguous.
    #[default]
    Full,
    /// By leaf name: `/family/kids` matches `kids` (and so does
    /// `/school/kids`: choose this only when leaf names are unique).
    Leaf,
}

/// The normal form of a user, email, role or domain name.
pub fn normalize(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The normal form of a group name.
pub fn normalize_group(name: &str, paths: GroupPaths) -> String {
    let n = normalize(name);
    let Some(path) = n.strip_prefix('/') else { return n };
    // Trailing slashes and white space go together (`/family/ /`), and a
    // name cut out of a path is trimmed like any name, so that normalising
    // twice changes nothing (`/ family` → `family`, not ` family`).
    let path = path.trim_end_matches(|c: char| c == '/' || c.is_whitespace());
    match paths {
        GroupPaths::Leaf => path.rsplit('/').next().unwrap_or(path).trim().to_string(),
        GroupPaths::Full if !path.contains('/') => path.trim().to_string(),
        GroupPaths::Full => format!("/{path}"),
    }
}

/// The normal forms of a list of names.
pub fn normalize_all<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<String> {
    names.into_iter().map(|n| normalize(n.as_ref())).collect()
}

/// The normal forms of a list of group names.
pub fn normalize_groups<S: AsRef<str>>(names: impl IntoIterator<Item = S>, paths: GroupPaths) -> Vec<String> {
    names.into_iter().map(|n| normalize_group(n.as_ref(), paths)).collect()
}

/// True when a list in normal form shares a name with another.
pub fn any_in(wanted: &[String], have: &[String]) -> bool {
    wanted.iter().any(|w| have.contains(w))
}

/// The domain of an email address in normal form (`Alice@Example.COM` →
/// `example.com`).
pub fn email_domain(email: &str) -> Option<String> {
    email.rsplit_once('@').map(|(_, d)| normalize(d)).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_normalisation_on_both_sides() {
        let cases = [
            ("Family-Members", "family-members", GroupPaths::Full, true),
            ("  family-members ", "FAMILY-MEMBERS", GroupPaths::Full, true),
            ("6F1C2D3A-AAAA-4BBB-8CCC-0123456789AB", "6f1c2d3a-aaaa-4bbb-8ccc-0123456789ab", GroupPaths::Full, true),
            ("/family", "family", GroupPaths::Full, true),
            ("/family/kids", "kids", GroupPaths::Full, false),
            ("/family/kids", "/Family/Kids", GroupPaths::Full, true),
            ("/family/kids", "kids", GroupPaths::Leaf, true),
            ("/family/kids", "/family/kids", GroupPaths::Leaf, true),
            ("/school/kids", "/family/kids", GroupPaths::Full, false),
            ("Ärzte", "ärzte", GroupPaths::Full, true),
            ("family", "families", GroupPaths::Full, false),
            ("/ Family", "family", GroupPaths::Full, true),
            ("/family/ kids", "kids", GroupPaths::Leaf, true),
            ("/family/kids/ /", "/family/kids", GroupPaths::Full, true),
        ];
        for (token, config, mode, want) in cases {
            let same = normalize_group(token, mode) == normalize_group(config, mode);
            assert_eq!(same, want, "{token} vs {config} ({mode:?})");
        }
    }

    #[test]
    fn email_domains() {
        assert_eq!(email_domain("Alice@Example.COM").as_deref(), Some("example.com"));
        assert_eq!(email_domain("no-at-sign"), None);
        assert_eq!(email_domain("trailing@"), None);
    }
}
