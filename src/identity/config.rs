//! `[identity]`, `[[identity.rules]]` and `[[role_map]]` as written in the
//! configuration, and the checks their values pass.

use serde::{Deserialize, Serialize};

pub(super) use crate::criteria::{check_names, check_value};
use crate::claims::{ClaimPaths, ClaimSource};
use crate::names::GroupPaths;
use crate::settings::ConfigError;

/// `[identity]` as written in the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub username_claims: Vec<String>,
    pub groups_claim: ClaimPaths,
    pub roles_claim: ClaimPaths,
    pub claim_sources: Vec<ClaimSource>,
    pub group_paths: GroupPaths,
    pub allow_unverified_email: bool,
    /// Count an email without an `email_verified` claim as verified.
    pub trust_unverified_email: bool,
    pub required_groups: Vec<String>,
    pub default_role: String,
    pub rules: Vec<IdentityRule>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            username_claims: vec!["preferred_username".into(), "email".into(), "sub".into()],
            groups_claim: ClaimPaths::one("groups"),
            roles_claim: ClaimPaths::one("roles"),
            claim_sources: vec![ClaimSource::IdToken, ClaimSource::Userinfo, ClaimSource::AccessToken],
            group_paths: GroupPaths::Full,
            allow_unverified_email: false,
            trust_unverified_email: false,
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

/// One `[[role_map]]` entry: a group, an app role or an Entra directory
/// role (`wids`) grants a role.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_role: Option<String>,
    pub role: String,
}

pub(super) fn check_paths(key: &str, paths: &[String]) -> Result<(), ConfigError> {
    match paths.iter().position(|p| p.trim().is_empty() || p.trim() != p) {
        Some(i) => Err(ConfigError::invalid(format!("{key}[{i}]"), "is not a claim name or dotted path")),
        None => Ok(()),
    }
}



pub(super) fn check_role(key: &str, role: &str) -> Result<(), ConfigError> {
    check_value(key, role)
}
