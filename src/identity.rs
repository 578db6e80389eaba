//! From claims to a user: who someone is as the protected apps will see them.
//!
//! The identity provider's claims (ID token, userinfo) are merged into one
//! [`Claims`] map, then a [`Mapper`] compiled from the `[identity]` section
//! turns them into an [`Identity`]: user name, email, display name, groups,
//! app roles and the portcullis role. The identity is computed once at login
//! and kept in the session.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{Config, ConfigError};

/// Claims as JSON: the merged view of every source the provider gave us.
pub type Claims = Map<String, Value>;

/// `[identity]` as written in the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub username_claims: Vec<String>,
    pub groups_claim: String,
    pub roles_claim: String,
    pub required_groups: Vec<String>,
    pub default_role: String,
    pub rules: Vec<IdentityRule>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            username_claims: vec!["preferred_username".into(), "email".into(), "sub".into()],
            groups_claim: "groups".into(),
            roles_claim: "roles".into(),
            required_groups: Vec::new(),
            default_role: "guest".into(),
            rules: Vec::new(),
        }
    }
}

/// One `[[identity.rules]]` entry: when it matches, it sets the mapped user.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "add_groups")]
    pub extra_groups: Vec<String>,
}

/// One `[[role_map]]` entry: a group or an app role grants a role.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<String>,
    pub role: String,
}

/// The mapped identity kept in a session and sent as headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Identity {
    /// The user name the apps see (possibly a shared account).
    pub user: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Group names (the provider's, plus any a rule adds).
    pub groups: Vec<String>,
    /// App roles from the roles claim.
    pub roles: Vec<String>,
    /// The portcullis role (`admin`, `user`, `viewer`, `guest`, ...).
    pub role: String,
    /// The person behind it: the provider's `sub`.
    pub subject: String,
    /// The person's own user name, kept for audits when a rule maps them
    /// onto a shared account.
    pub person: String,
}

/// Why a login was refused (shown to the user and written to the audit log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub reason: String,
}

/// The compiled `[identity]` section.
#[derive(Clone, Debug)]
pub struct Mapper {
    config: IdentityConfig,
}

impl Mapper {
    pub fn new(config: &Config) -> Result<Mapper, ConfigError> {
        if config.identity.username_claims.is_empty() {
            return Err(ConfigError::invalid("identity.username_claims", "must name at least one claim"));
        }
        Ok(Mapper { config: config.identity.clone() })
    }

    /// Maps merged claims to an identity, or refuses the login.
    pub fn map(&self, claims: &Claims) -> Result<Identity, Refusal> {
        let subject = claim_str(claims, "sub").unwrap_or_default();
        if subject.is_empty() {
            return Err(Refusal { reason: "the identity provider sent no `sub` claim".into() });
        }
        let user = self
            .config
            .username_claims
            .iter()
            .find_map(|c| claim_str(claims, c).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| subject.clone());
        let groups = string_list(claims.get(&self.config.groups_claim));
        let roles = string_list(claims.get(&self.config.roles_claim));
        Ok(Identity {
            person: user.clone(),
            user,
            email: claim_str(claims, "email"),
            name: claim_str(claims, "name"),
            groups,
            roles,
            role: self.config.default_role.clone(),
            subject,
        })
    }
}

/// Merges claim sources in order: a later source fills what an earlier one
/// lacks; list-valued `groups` are united.
pub fn merge_claims(sources: &[&Claims]) -> Claims {
    let mut out = Claims::new();
    for source in sources {
        for (k, v) in source.iter() {
            match out.get_mut(k) {
                None => {
                    out.insert(k.clone(), v.clone());
                }
                Some(Value::Array(existing)) if k == "groups" => {
                    if let Value::Array(more) = v {
                        for item in more {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
    out
}

fn claim_str(claims: &Claims, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}
