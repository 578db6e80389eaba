//! The identity headers portcullis answers with, and making any value safe
//! to put in one.
//!
//! Claim values come from the identity provider and may hold anything; a
//! header value built here never carries CR, LF, NUL or another control
//! character, so no claim can smuggle a second header to the upstream.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::settings::ConfigError;
use crate::identity::Identity;
pub use crate::header_value::{MAX_VALUE_LEN, sanitize};

/// Names of the identity headers sent back to the proxy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub user: String,
    pub email: String,
    pub name: String,
    pub groups: String,
    pub role: String,
    pub subject: String,
    pub groups_separator: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: "Remote-User".into(),
            email: "Remote-Email".into(),
            name: "Remote-Name".into(),
            groups: "Remote-Groups".into(),
            role: "Remote-Role".into(),
            subject: "Remote-Subject".into(),
            groups_separator: ",".into(),
        }
    }
}

/// Where an upstream credential's value comes from: never inline, so it is
/// never printed with the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum UpstreamHeaderValue {
    File(std::path::PathBuf),
    Env(String),
}

/// The compiled header names, parsed once at start.
#[derive(Clone, Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    name: HeaderName,
    groups: HeaderName,
    role: HeaderName,
    subject: HeaderName,
    separator: String,
}

impl HeaderNames {
    /// The six identity headers, in the order portcullis lists them: each
    /// with its configuration key (`headers.user`) and its name.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("headers.user", &self.user),
            ("headers.email", &self.email),
            ("headers.name", &self.name),
            ("headers.groups", &self.groups),
            ("headers.role", &self.role),
            ("headers.subject", &self.subject),
        ]
    }
}

impl IdentityHeaders {
    /// Parses `[headers]`; errors name the key.
    pub fn new(names: &HeaderNames) -> Result<IdentityHeaders, ConfigError> {
        let [user, email, name, groups, role, subject] = names.all().map(|(key, v)| {
            HeaderName::from_bytes(v.as_bytes()).map_err(|_| ConfigError::invalid(key, format!("`{v}` is not a valid header name")))
        });
        if names.groups_separator.is_empty() || names.groups_separator.chars().any(|c| c.is_control()) {
            return Err(ConfigError::invalid("headers.groups_separator", "must be non-empty printable text"));
        }
        Ok(IdentityHeaders {
            user: user?,
            email: email?,
            name: name?,
            groups: groups?,
            role: role?,
            subject: subject?,
            separator: names.groups_separator.clone(),
        })
    }

    /// The header names portcullis owns: a client must never be able to set
    /// them, so proxies clear them and portcullis never echoes them.
    pub fn names(&self) -> [&HeaderName; 6] {
        [&self.user, &self.email, &self.name, &self.groups, &self.role, &self.subject]
    }

    /// Writes the identity headers for `identity` into `out`. Computed on
    /// each verify: a value that needs no cleaning (nearly all of them) is
    /// one small copy, which costs less than keeping the values with every
    /// session in memory would.
    pub fn write(&self, identity: &Identity, out: &mut HeaderMap) {
        out.insert(self.user.clone(), value(identity.user()));
        out.insert(self.email.clone(), value(identity.email().unwrap_or("")));
        out.insert(self.name.clone(), value(identity.name().unwrap_or("")));
        out.insert(self.groups.clone(), self.groups_value(identity));
        out.insert(self.role.clone(), value(identity.role()));
        out.insert(self.subject.clone(), value(identity.person()));
    }

    /// The groups joined with the separator (a separator inside a name
    /// becomes a space), built in one buffer that becomes the header value
    /// itself: one allocation however many groups there are.
    fn groups_value(&self, identity: &Identity) -> HeaderValue {
        let groups = identity.header_groups().unwrap_or_else(|| identity.groups());
        if groups.len() == 0 {
            return HeaderValue::from_static("");
        }
        // The separator is never empty (checked at start).
        let sep = self.separator.as_str();
        let mut joined = String::with_capacity(groups.clone().map(|g| g.len() + sep.len()).sum());
        for (i, g) in groups.enumerate() {
            if i > 0 {
                joined.push_str(sep);
            }
            if g.contains(sep) {
                joined.push_str(&g.replace(sep, " "));
            } else {
                joined.push_str(g);
            }
        }
        if unchanged(&joined) {
            // Text sanitize leaves as it is is always a valid value.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).unwrap_or_else(|_| HeaderValue::from_static(""))
        } else {
            sanitize(&joined)
        }
    }
}

/// [`sanitize`], without its work when `text` would come out unchanged.
fn value(text: &str) -> HeaderValue {
    match unchanged(text).then(|| HeaderValue::from_str(text).ok()).flatten() {
        Some(v) => v,
        None => sanitize(text),
    }
}

/// Whether [`sanitize`] would give `text` back as it is.
fn unchanged(text: &str) -> bool {
    let b = text.as_bytes();
    // Visible ASCII with spaces only inside: nearly every value, checked
    // byte by byte; anything else takes the general check.
    let ascii = b.len() <= MAX_VALUE_LEN
        && b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
        && b.iter().all(|c| (b' '..=b'~').contains(c));
    ascii || text.len() <= MAX_VALUE_LEN && text.trim().len() == text.len() && !text.chars().any(char::is_control)
}

/// Extra headers for the upstream per mapped user (`[upstream_headers.USER]`),
/// read once at start from files or the environment.
#[derive(Clone, Default)]
pub struct UpstreamHeaders {
    by_user: std::collections::HashMap<String, Vec<(HeaderName, HeaderValue)>>,
}

impl std::fmt::Debug for UpstreamHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are credentials: show only which users have which header names.
        let mut m = f.debug_map();
        for (user, headers) in &self.by_user {
            m.entry(user, &headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl UpstreamHeaders {
    pub fn load(
        config: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, UpstreamHeaderValue>>,
    ) -> Result<UpstreamHeaders, ConfigError> {
        let mut by_user = std::collections::HashMap::new();
        for (user, headers) in config {
            let mut list = Vec::new();
            for (name, source) in headers {
                let key = format!("upstream_headers.{user}.{name}");
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ConfigError::invalid(&key, format!("`{name}` is not a valid header name")))?;
                let value = match source {
                    UpstreamHeaderValue::File(path) => std::fs::read_to_string(path)
                        .map_err(|e| ConfigError::invalid(&key, format!("cannot read {}: {e}", path.display())))?,
                    UpstreamHeaderValue::Env(var) => std::env::var(var)
                        .map_err(|_| ConfigError::invalid(&key, format!("environment variable {var} is not set")))?,
                };
                let value = value.trim();
                if value.is_empty() {
                    return Err(ConfigError::invalid(&key, "the value is empty"));
                }
                let mut value = HeaderValue::from_str(value)
                    .map_err(|_| ConfigError::invalid(&key, "the value contains characters not allowed in a header"))?;
                value.set_sensitive(true);
                list.push((header, value));
            }
            by_user.insert(user.clone(), list);
        }
        Ok(UpstreamHeaders { by_user })
    }

    /// Writes the headers configured for `user`, if any.
    pub fn write(&self, user: &str, out: &mut HeaderMap) {
        // Most setups have none: skip hashing the user on every verify.
        if self.by_user.is_empty() {
            return;
        }
        if let Some(list) = self.by_user.get(user) {
            for (name, value) in list {
                out.insert(name.clone(), value.clone());
            }
        }
    }

    /// Header names set for any user (proxies must clear them from clients).
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.by_user.values().flatten().map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_survive() {
        let v = sanitize("alice\r\nX-Admin: yes\0\x1b[31m");
        let bytes = v.as_bytes();
        assert!(!bytes.iter().any(|b| *b < 0x20 || *b == 0x7f), "{v:?}");
        assert_eq!(v.to_str().unwrap(), "alice  X-Admin: yes  [31m");
    }

    #[test]
    fn unicode_is_kept_and_length_bounded() {
        assert_eq!(sanitize("José").as_bytes(), "José".as_bytes());
        let long = "é".repeat(MAX_VALUE_LEN);
        assert!(sanitize(&long).len() <= MAX_VALUE_LEN);
    }

    #[test]
    fn groups_are_joined_and_separator_in_names_is_neutralised() {
        let h = IdentityHeaders::new(&HeaderNames::default()).unwrap();
        let id = Identity::from(crate::identity::IdentityParts {
            user: "alice".into(),
            groups: vec!["a,b".into(), "c".into()],
            role: "user".into(),
            person: "alice".into(),
            ..Default::default()
        });
        let mut map = HeaderMap::new();
        h.write(&id, &mut map);
        assert_eq!(map["remote-groups"], "a b,c");
        assert_eq!(map["remote-user"], "alice");
        assert_eq!(map["remote-role"], "user");
    }

    #[test]
    fn a_value_is_taken_as_it_is_only_when_cleaning_would_not_change_it() {
        let long = "é".repeat(MAX_VALUE_LEN);
        let ascii = "a".repeat(MAX_VALUE_LEN + 1);
        for text in ["alice", "José", "", " ", " lead", "trail ", "\u{a0}nbsp", "tab\there", "c1\u{85}", "nul\0", "del\x7f", "a\r\nb", &long, &ascii] {
            assert_eq!(value(text), sanitize(text), "{text:?}");
        }
    }

    #[test]
    fn each_header_gets_its_own_cleaned_value() {
        let h = IdentityHeaders::new(&HeaderNames::default()).unwrap();
        let id = Identity::from(crate::identity::IdentityParts {
            user: " alice\r\n".into(),
            email: Some("alice@example.com".into()),
            name: None,
            groups: vec!["family".into(), "photos".into()],
            role: "user".into(),
            person: "Alice\0A".into(),
            ..Default::default()
        });
        let mut map = HeaderMap::new();
        h.write(&id, &mut map);
        let got: Vec<_> = h.names().iter().map(|n| map[*n].to_str().unwrap().to_string()).collect();
        assert_eq!(got, ["alice", "alice@example.com", "", "family,photos", "user", "Alice A"]);
    }

    #[test]
    fn the_groups_value_is_the_cleaned_join_of_the_names() {
        let long = "g".repeat(MAX_VALUE_LEN);
        let lists: [&[&str]; 6] =
            [&["a,b", "c"], &["/family", "Ünï", " x "], &["tab\tin", "nl\nin"], &[",", ",,"], &[&long, "more"], &["solo"]];
        for sep in [",", "; "] {
            let h = IdentityHeaders::new(&HeaderNames { groups_separator: sep.into(), ..HeaderNames::default() }).unwrap();
            for list in lists {
                let id = Identity::from(crate::identity::IdentityParts {
                    groups: list.iter().map(|g| g.to_string()).collect(),
                    ..Default::default()
                });
                let expected = sanitize(&list.iter().map(|g| g.replace(sep, " ")).collect::<Vec<_>>().join(sep));
                assert_eq!(h.groups_value(&id), expected, "{list:?} with {sep:?}");
            }
        }
    }
}
