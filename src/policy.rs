//! Who may reach which host and path: the per-request access decision.
//!
//! `[[policy]]` rules are matched in file order against the original request
//! (host, path, method); the first match decides. A `bypass` rule needs no
//! login at all, `deny` refuses everyone, and `allow` admits signed-in users
//! who meet its requirements. When no rule matches, `default_policy` decides.
//! Policy is evaluated on every verify from the session's identity, so an
//! edited policy applies without anyone logging in again.

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::identity::{Claims, Identity};

/// What happens when no `[[policy]]` rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Any signed-in user who passed `required_groups`.
    #[default]
    Allow,
    Deny,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Bypass,
    Deny,
    Allow,
}

/// One `[[policy]]` entry as written in the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
}

/// The parts of the original request that policy looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Lower-case host without port.
    pub host: String,
    pub path: String,
    pub method: String,
}

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: Option<usize> },
    Deny { rule: Option<usize>, reason: String },
}

/// The compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<PolicyRule>,
    default: DefaultPolicy,
}

impl Policy {
    pub fn new(config: &Config) -> Result<Policy, ConfigError> {
        Ok(Policy { rules: config.policy.clone(), default: config.default_policy })
    }

    /// True when the first rule matching this request is a `bypass`: the
    /// request needs no session at all.
    pub fn bypasses(&self, req: &RequestInfo) -> bool {
        self.first_match(req).is_some_and(|(_, r)| r.action == Action::Bypass)
    }

    /// Decides for a signed-in user.
    pub fn decide(&self, req: &RequestInfo, identity: &Identity, _claims: &Claims) -> Decision {
        match self.first_match(req) {
            Some((i, rule)) => match rule.action {
                Action::Bypass => Decision::Allow { rule: Some(i) },
                Action::Deny => Decision::Deny { rule: Some(i), reason: format!("policy rule {i} denies this request") },
                Action::Allow => {
                    let ok = (rule.groups.is_empty() || rule.groups.iter().any(|g| identity.groups.contains(g)))
                        && (rule.roles.is_empty() || rule.roles.contains(&identity.role))
                        && (rule.users.is_empty() || rule.users.contains(&identity.user));
                    if ok {
                        Decision::Allow { rule: Some(i) }
                    } else {
                        Decision::Deny { rule: Some(i), reason: format!("policy rule {i} requirements not met") }
                    }
                }
            },
            None => match self.default {
                DefaultPolicy::Allow => Decision::Allow { rule: None },
                DefaultPolicy::Deny => Decision::Deny { rule: None, reason: "no policy rule matches".into() },
            },
        }
    }

    fn first_match(&self, req: &RequestInfo) -> Option<(usize, &PolicyRule)> {
        self.rules.iter().enumerate().find(|(_, r)| {
            r.host.as_deref().is_none_or(|h| h.eq_ignore_ascii_case(&req.host))
                && r.path.as_deref().is_none_or(|p| req.path.starts_with(p.trim_end_matches('*')))
                && (r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(&req.method)))
        })
    }
}
