//! The identity rules filed by the user names and emails they list, so
//! that a sign-in is compared with the rules that could be about the
//! person, not with every rule: a configuration with a rule per person
//! (thousands of `users = ["…"]` entries) maps someone as quickly as one
//! with a few rules.
//!
//! The index only narrows: a rule that lists users matches only a person
//! whose user name is among them, and one that lists emails only a person
//! whose email is, so such a rule is filed under each name it lists (under
//! its users when it sets both, as it must meet both); every other rule
//! (groups, email domains or an expression only) is a candidate for
//! everyone. The candidates are then judged in full, as a scan would judge
//! them, in rule order: the first written that matches wins, wherever it
//! was filed, exactly as with a scan.

use std::collections::HashMap;

use crate::criteria::Criteria;

/// Where each rule is filed, by position (ascending in each list).
#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    /// Rules that list users, under each user name (in normal form).
    by_user: HashMap<Box<str>, Vec<usize>>,
    /// Rules that list emails but no users, under each email.
    by_email: HashMap<Box<str>, Vec<usize>>,
    /// Rules that list neither: candidates for everyone.
    everyone: Vec<usize>,
}

impl Index {
    pub(super) fn new<'a>(rules: impl Iterator<Item = &'a Criteria>) -> Index {
        let mut index = Index::default();
        for (i, who) in rules.enumerate() {
            let (map, names) = match (who.users(), who.emails()) {
                ([], []) => {
                    index.everyone.push(i);
                    continue;
                }
                ([], emails) => (&mut index.by_email, emails),
                (users, _) => (&mut index.by_user, users),
            };
            for name in names {
                let list = map.entry(name.as_str().into()).or_default();
                // A name written twice (perhaps in two letter cases) files
                // the rule once.
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        index
    }

    /// The position of the first rule (in rule order) among those that
    /// could be about the person with user name `user` and email `email`
    /// (both in normal form) for which `matches` holds. Candidates are
    /// tried in rule order, each at most once, so `matches` sees exactly
    /// the rules a scan would have judged in full, in the same order.
    pub(super) fn first_match(&self, user: &str, email: Option<&str>, mut matches: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut lists = [filed(&self.by_user, Some(user)), filed(&self.by_email, email), self.everyone.as_slice()];
        loop {
            // The lists hold no rule in common: take the smallest head.
            let (k, &i) = lists.iter().enumerate().filter_map(|(k, l)| l.first().map(|i| (k, i))).min_by_key(|&(_, i)| *i)?;
            lists[k] = &lists[k][1..];
            if matches(i) {
                return Some(i);
            }
        }
    }
}

/// The rules filed under `name`.
fn filed<'a>(map: &'a HashMap<Box<str>, Vec<usize>>, name: Option<&str>) -> &'a [usize] {
    name.and_then(|n| map.get(n)).map_or(&[], Vec::as_slice)
}
