//! What a lookup answers: groups with their names, and how group IDs
//! compare.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::GroupsHeader;

/// One group: its object ID (or, for tenants that emit names or
/// sAMAccountNames in the token, the value as sent) and its display name
/// when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: Option<String>,
}

/// The user's groups after the lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The token's groups first (in claim order), then those only Graph
    /// knew; no ID twice.
    pub groups: Vec<Group>,
    /// The token carried an overage marker.
    pub overage: bool,
    /// Memberships were read from Graph (or its cache) for this login.
    pub from_graph: bool,
}

impl Resolved {
    /// False when the token had an overage marker and Graph was not (or
    /// could not be) asked: the groups are then incomplete, and a login
    /// that requires groups must be refused.
    pub fn membership_known(&self) -> bool {
        !self.overage || self.from_graph
    }

    /// The values for the groups header, as `groups_header` asks.
    pub fn header_values(&self, how: GroupsHeader) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.groups {
            match how {
                GroupsHeader::Ids => out.push(g.id.clone()),
                GroupsHeader::Names => out.push(g.name.clone().unwrap_or_else(|| g.id.clone())),
                GroupsHeader::Both => {
                    out.push(g.id.clone());
                    out.extend(g.name.clone());
                }
            }
        }
        dedup(out)
    }

    /// Every value a rule may name a group by: IDs and names.
    pub fn match_values(&self) -> Vec<String> {
        self.header_values(GroupsHeader::Both)
    }
}

fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|v| seen.insert(v.clone())).collect()
}

/// Whether `s` looks like an Entra object ID.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The key groups are compared by: GUIDs case-insensitively, others as sent.
pub(super) fn group_key(id: &str) -> String {
    if is_guid(id) { id.to_ascii_lowercase() } else { id.to_string() }
}

/// Adds `more` to `groups`, by ID; a name from Graph fills a missing one.
pub(super) fn merge(groups: &mut Vec<Group>, more: &[Group]) {
    let mut index: HashMap<String, usize> = groups.iter().enumerate().map(|(i, g)| (group_key(&g.id), i)).collect();
    for g in more {
        match index.get(&group_key(&g.id)) {
            Some(&i) => {
                if groups[i].name.is_none() {
                    groups[i].name = g.name.clone();
                }
            }
            None => {
                index.insert(group_key(&g.id), groups.len());
                groups.push(g.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_follow_groups_header() {
        let r = Resolved {
            groups: vec![
                Group { id: "0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11".into(), name: Some("photo-admins".into()) },
                Group { id: "7c1e2b3a-0000-4000-8000-000000000002".into(), name: None },
                Group { id: "family".into(), name: None },
            ],
            overage: false,
            from_graph: false,
        };
        assert_eq!(
            r.header_values(GroupsHeader::Names),
            ["photo-admins", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert_eq!(
            r.header_values(GroupsHeader::Ids),
            ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert_eq!(
            r.header_values(GroupsHeader::Both),
            ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11", "photo-admins", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert!(r.membership_known());
        assert!(!Resolved { groups: vec![], overage: true, from_graph: false }.membership_known());
    }

    #[test]
    fn merge_deduplicates_guids_case_insensitively() {
        let mut groups = vec![Group { id: "0B6F6A4E-3C1D-4F43-9A4B-4E1F0A2C9D11".into(), name: None }];
        merge(
            &mut groups,
            &[
                Group { id: "0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11".into(), name: Some("photo-admins".into()) },
                Group { id: "7c1e2b3a-0000-4000-8000-000000000002".into(), name: Some("staff".into()) },
            ],
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].name.as_deref(), Some("photo-admins"));
        assert_eq!(groups[1].name.as_deref(), Some("staff"));
    }


    #[test]
    fn guids_are_recognised() {
        assert!(is_guid("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"));
        assert!(is_guid("0B6F6A4E-3C1D-4F43-9A4B-4E1F0A2C9D11"));
        assert!(!is_guid("photo-admins"));
        assert!(!is_guid("0b6f6a4e3c1d4f439a4b4e1f0a2c9d11"));
        assert!(!is_guid("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d1g"));
    }
}
