//! The mapped identity in the compact form every session keeps.
//!
//! An identity is a dozen short strings (user, email, name, role, subject,
//! groups, ...). Kept as separate `String`s they cost a 24-byte handle and
//! a heap allocation each, several hundred bytes a session; the memory
//! store holds one identity per session for its whole life. Here all the
//! text sits back to back in one buffer, with one array of end offsets:
//! two allocations, whatever the number of groups. [`IdentityParts`] is the
//! plain form to build one from and what is serialized, so the stored
//! format is the same as the parts'.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::IdentityParts;

/// Indexes of the single-valued fields in `ends`.
const USER: usize = 0;
const EMAIL: usize = 1;
const NAME: usize = 2;
const ROLE: usize = 3;
const SUBJECT: usize = 4;
const PERSON: usize = 5;
const PERSON_EMAIL: usize = 6;
const FIELDS: usize = 7;

/// Which optional fields are set.
const HAS_EMAIL: u8 = 1;
const HAS_NAME: u8 = 2;
const HAS_PERSON_EMAIL: u8 = 4;
const HAS_HEADER_GROUPS: u8 = 8;

/// The mapped identity kept in a session and sent as headers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "IdentityParts", into = "IdentityParts")]
pub struct Identity {
    /// Every value, back to back.
    text: Box<str>,
    /// Where each value ends in `text`: the single-valued fields, then the
    /// groups, the roles and the header groups.
    ends: Box<[u32]>,
    groups: u32,
    roles: u32,
    present: u8,
}

impl Identity {
    /// The user name the apps see (possibly a shared account).
    pub fn user(&self) -> &str {
        self.field(USER)
    }

    pub fn email(&self) -> Option<&str> {
        self.optional(EMAIL, HAS_EMAIL)
    }

    pub fn name(&self) -> Option<&str> {
        self.optional(NAME, HAS_NAME)
    }

    /// The portcullis role (`admin`, `user`, `viewer`, `guest`, ...).
    pub fn role(&self) -> &str {
        self.field(ROLE)
    }

    /// The person behind it: the provider's `sub`.
    pub fn subject(&self) -> &str {
        self.field(SUBJECT)
    }

    /// The person's own user name (differs from `user` when a rule maps
    /// them onto a shared account).
    pub fn person(&self) -> &str {
        self.field(PERSON)
    }

    /// The person's own email (when trusted), for policy `emails`.
    pub fn person_email(&self) -> Option<&str> {
        self.optional(PERSON_EMAIL, HAS_PERSON_EMAIL)
    }

    /// Group names (the provider's, plus any a rule adds).
    pub fn groups(&self) -> Names<'_> {
        self.list(FIELDS, self.groups as usize)
    }

    /// App roles from the roles claim.
    pub fn roles(&self) -> Names<'_> {
        self.list(FIELDS + self.groups as usize, self.roles as usize)
    }

    /// What the groups header shows when it differs from `groups` (with
    /// Microsoft Graph: names rather than IDs).
    pub fn header_groups(&self) -> Option<Names<'_>> {
        let from = FIELDS + self.groups as usize + self.roles as usize;
        (self.present & HAS_HEADER_GROUPS != 0).then(|| self.list(from, self.ends.len() - from))
    }

    /// Bytes this identity holds on the heap (to weigh a cached session).
    pub fn heap_size(&self) -> usize {
        self.text.len() + self.ends.len() * std::mem::size_of::<u32>()
    }

    /// The plain form, to change something and pack it again.
    pub fn to_parts(&self) -> IdentityParts {
        let owned = |n: Names<'_>| n.map(str::to_string).collect();
        IdentityParts {
            user: self.user().into(),
            email: self.email().map(Into::into),
            name: self.name().map(Into::into),
            groups: owned(self.groups()),
            roles: owned(self.roles()),
            role: self.role().into(),
            subject: self.subject().into(),
            person: self.person().into(),
            person_email: self.person_email().map(Into::into),
            header_groups: self.header_groups().map(owned),
        }
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    fn field(&self, i: usize) -> &str {
        &self.text[self.start(i)..self.ends[i] as usize]
    }

    fn optional(&self, i: usize, flag: u8) -> Option<&str> {
        (self.present & flag != 0).then(|| self.field(i))
    }

    fn list(&self, from: usize, len: usize) -> Names<'_> {
        Names { text: &self.text, start: self.start(from), ends: &self.ends[from..from + len] }
    }
}

impl From<IdentityParts> for Identity {
    fn from(p: IdentityParts) -> Identity {
        let lists = p.groups.len() + p.roles.len() + p.header_groups.as_ref().map_or(0, Vec::len);
        let mut text = String::new();
        let mut ends = Vec::with_capacity(FIELDS + lists);
        let mut push = |s: &str| {
            text.push_str(s);
            // Claims are capped at 64 KiB at login, so this always fits.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        };
        for s in [
            p.user.as_str(),
            p.email.as_deref().unwrap_or(""),
            p.name.as_deref().unwrap_or(""),
            p.role.as_str(),
            p.subject.as_str(),
            p.person.as_str(),
            p.person_email.as_deref().unwrap_or(""),
        ] {
            push(s);
        }
        for s in p.groups.iter().chain(&p.roles).chain(p.header_groups.iter().flatten()) {
            push(s);
        }
        let flag = |set: bool, f: u8| if set { f } else { 0 };
        Identity {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            groups: p.groups.len() as u32,
            roles: p.roles.len() as u32,
            present: flag(p.email.is_some(), HAS_EMAIL)
                | flag(p.name.is_some(), HAS_NAME)
                | flag(p.person_email.is_some(), HAS_PERSON_EMAIL)
                | flag(p.header_groups.is_some(), HAS_HEADER_GROUPS),
        }
    }
}

impl From<Identity> for IdentityParts {
    fn from(i: Identity) -> IdentityParts {
        i.to_parts()
    }
}

impl Default for Identity {
    fn default() -> Identity {
        IdentityParts::default().into()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_parts().fmt(f)
    }
}

/// The values of one of an identity's lists, in order.
#[derive(Clone)]
pub struct Names<'a> {
    text: &'a str,
    start: usize,
    ends: &'a [u32],
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (&end, rest) = self.ends.split_first()?;
        let value = &self.text[self.start..end as usize];
        self.start = end as usize;
        self.ends = rest;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ends.len(), Some(self.ends.len()))
    }
}

impl ExactSizeIterator for Names<'_> {}

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.clone())
    }
}

impl fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> IdentityParts {
        IdentityParts {
            user: "family".into(),
            email: Some("".into()),
            name: None,
            groups: vec!["/family".into(), "".into(), "Ünïcode group".into()],
            roles: vec!["photos.read".into()],
            role: "user".into(),
            subject: "sub-1".into(),
            person: "alice".into(),
            person_email: Some("alice@example.com".into()),
            header_groups: Some(vec![]),
        }
    }

    #[test]
    fn every_field_reads_back_as_it_was_given() {
        let p = parts();
        let i = Identity::from(p.clone());
        assert_eq!(i.user(), "family");
        assert_eq!(i.email(), Some(""), "an empty value is not an absent one");
        assert_eq!(i.name(), None);
        assert_eq!(i.groups().collect::<Vec<_>>(), ["/family", "", "Ünïcode group"]);
        assert_eq!(i.groups().len(), 3);
        assert_eq!(i.roles().collect::<Vec<_>>(), ["photos.read"]);
        assert_eq!(i.role(), "user");
        assert_eq!(i.subject(), "sub-1");
        assert_eq!(i.person(), "alice");
        assert_eq!(i.person_email(), Some("alice@example.com"));
        assert_eq!(i.header_groups().map(|g| g.count()), Some(0));
        assert_eq!(i.to_parts(), p);

        let bare = Identity::from(IdentityParts { header_groups: None, ..p });
        assert!(bare.header_groups().is_none());
        assert_eq!(Identity::default().to_parts(), IdentityParts::default());
    }

    #[test]
    fn serialized_as_the_parts_are() {
        let i = Identity::from(parts());
        let json = serde_json::to_string(&i).unwrap();
        assert_eq!(json, serde_json::to_string(&parts()).unwrap());
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, i);
    }
}
