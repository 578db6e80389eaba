//! Comparing names the way people expect: group, role, user and email
//! names match case-insensitively, after the same normalisation on the
//! configuration side and the token side.
//!
//! Normalising applies Unicode NFKC (compatibility forms become the
//! letters they stand for: the Kelvin sign `\u{212A}` becomes `K`, a
//! full-width `ａ` becomes `a`, a decomposed `A` + `\u{308}` becomes `Ä`),
//! trims surrounding white space and folds ASCII letters to lower case, so
//! `Family-Members`, `family-members` and a GUID in any case compare equal.
//! Only ASCII letters fold: Unicode lower-casing maps letters outside ASCII
//! onto ASCII ones (and differs between versions of Unicode), which would
//! let a look-alike name equal another. A user name that NFKC would change
//! is refused at login (see [`is_normal`]). Group names that are Keycloak
//! full paths (`/family/kids`) are further reduced according to
//! [`GroupPaths`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

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

/// The normal form of a user, email, role or domain name: NFKC, trimmed,
/// ASCII letters in lower case.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    if name.is_ascii() {
        // ASCII is its own NFKC: the common case, without the table look-ups.
        return name.to_ascii_lowercase();
    }
    let mut n: String = name.nfkc().collect();
    n.make_ascii_lowercase();
    match n.trim() {
        t if t.len() == n.len() => n,
        t => t.to_string(),
    }
}

/// True when Unicode NFKC leaves `name` as it is: no compatibility
/// characters (the Kelvin sign, full-width or ligature letters, ...) and
/// no decomposed accents. A user name must be, so that no two people whose
/// names look alike compare equal in a rule.
pub fn is_normal(name: &str) -> bool {
    name.is_ascii() || unicode_normalization::is_nfkc(name)
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

/// A list of names in normal form that a rule matches people by: kept as
/// written (for what a log line or `explain` says the rule requires), and
/// asked whether a name is in it with one hash look-up when it is long.
///
/// A short list (the common case: one to a few names) is compared name by
/// name, which is quicker than hashing. A long one is also kept as a
/// `HashSet`, so that a rule listing thousands of users or emails costs
/// about what one listing a few does (its names are then held twice, once
/// for each use: configuration, not per request).
#[derive(Clone, Debug, Default)]
pub struct NameSet {
    /// In normal form, in the order written.
    names: Box<[String]>,
    /// For a long list.
    set: Option<Box<HashSet<Box<str>>>>,
}

/// Up to this many names, a list is compared name by name: comparing two
/// names takes about a nanosecond (most differ in length), hashing one
/// about twenty.
const SHORT: usize = 16;

impl NameSet {
    /// The names, already in normal form, in the order written.
    pub fn new(names: Vec<String>) -> NameSet {
        let set = (names.len() > SHORT).then(|| Box::new(names.iter().map(|n| n.as_str().into()).collect()));
        NameSet { names: names.into_boxed_slice(), set }
    }

    /// The names as written (in normal form).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether `name` (in normal form) is one of the names.
    pub fn contains(&self, name: &str) -> bool {
        match &self.set {
            Some(set) => set.contains(name),
            None => self.names.iter().any(|n| n == name),
        }
    }

    /// Whether any of `have` (in normal form) is one of the names.
    pub fn any_in(&self, have: &[String]) -> bool {
        match &self.set {
            Some(_) => have.iter().any(|h| self.contains(h)),
            None => self.names.iter().any(|n| have.contains(n)),
        }
    }
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
            ("ärzte", "ärzte", GroupPaths::Full, true),
            // Only ASCII letters fold: outside ASCII, case must match.
            ("Ärzte", "ärzte", GroupPaths::Full, false),
            // NFKC: a decomposed accent equals the composed one ...
            ("A\u{308}rzte", "Ärzte", GroupPaths::Full, true),
            // ... and compatibility letters the letters they stand for.
            ("\u{FF46}amily", "family", GroupPaths::Full, true),
            ("/family/\u{212A}ids", "/family/kids", GroupPaths::Full, true),
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
    fn no_letter_outside_ascii_folds_onto_an_ascii_one() {
        // Unicode lower-casing turns the Kelvin sign into `k` and the
        // dotted capital I into `i` + a combining dot; folding only ASCII
        // after NFKC keeps these apart from look-alikes that are not
        // compatibility forms of them.
        assert_ne!(normalize("\u{130}nfo"), normalize("info"));
        assert_ne!(normalize("p\u{430}ypal"), normalize("paypal")); // Cyrillic a
        // What NFKC maps to ASCII compares equal to it, so a user name that
        // NFKC changes is refused at login (`is_normal`).
        assert_eq!(normalize("\u{212A}ids"), "kids");
        assert_eq!(normalize("\u{FF41}dmin"), "admin");
        for (name, normal) in [
            ("kids", true),
            ("J\u{F6}rg", true),
            ("\u{212A}ids", false),
            ("\u{FF41}dmin", false),
            ("o\u{308}", false),
            ("\u{FB01}le", false),
            ("p\u{430}ypal", true),
        ] {
            assert_eq!(is_normal(name), normal, "{name:?}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for name in ["  Ärzte ", "\u{3000}admin\u{3000}", "A\u{308}", "\u{212A}", "/Family/ Kids /", "\u{FF21}\u{FF22}"] {
            let once = normalize(name);
            assert_eq!(normalize(&once), once, "{name:?}");
            for mode in [GroupPaths::Full, GroupPaths::Leaf] {
                let g = normalize_group(name, mode);
                assert_eq!(normalize_group(&g, mode), g, "{name:?} {mode:?}");
            }
        }
    }

    proptest::proptest! {
        /// A list long enough for its hash set answers every name as the
        /// list compared name by name does: names in it, names not in it,
        /// lists with the same name twice, and lists from empty to long.
        #[test]
        fn a_name_set_holds_what_its_list_holds(
            list in proptest::collection::vec("[a-c]{0,3}", 0..40),
            asked in proptest::collection::vec("[a-c]{0,3}", 0..6),
        ) {
            let set = NameSet::new(list.clone());
            proptest::prop_assert_eq!(set.names(), list.as_slice());
            for name in &asked {
                proptest::prop_assert_eq!(set.contains(name), list.contains(name), "{:?} in {:?}", name, list);
            }
            proptest::prop_assert_eq!(set.any_in(&asked), list.iter().any(|n| asked.contains(n)), "{:?} in {:?}", asked, list);
        }
    }

    #[test]
    fn a_long_name_set_finds_each_of_its_names() {
        let list: Vec<String> = (0..10_000).map(|i| format!("user-{i}@example.com")).collect();
        let set = NameSet::new(list.clone());
        assert!(list.iter().all(|n| set.contains(n)));
        assert!(!set.contains("user-10000@example.com"));
        assert!(!set.contains(""));
        assert!(set.any_in(&["nobody".into(), "user-9999@example.com".into()]));
        assert!(!set.any_in(&["nobody".into(), "User-1@example.com".into()]));
    }

    #[test]
    fn email_domains() {
        assert_eq!(email_domain("Alice@Example.COM").as_deref(), Some("example.com"));
        assert_eq!(email_domain("no-at-sign"), None);
        assert_eq!(email_domain("trailing@"), None);
    }
}
