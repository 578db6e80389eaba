//! Who may reach which host and path: the per-request access decision.
//!
//! `[[policy]]` rules are matched in file order against the original request
//! (host, path, method); the first match decides. A `bypass` rule needs no
//! login at all, `deny` refuses everyone, and `allow` admits signed-in users
//! who meet its requirements: any of the names within a list, all of the
//! lists a rule sets. When no rule matches, `default_policy` decides.
//! Policy is evaluated on every verify from the session's identity, so an
//! edited policy applies without anyone logging in again.
//!
//! Hosts match exactly or as `*.example.com` (any subdomain, not the apex).
//! Paths match as a prefix ending at a segment boundary (`/admin` matches
//! `/admin` and `/admin/x`, not `/administrator`), or as a glob when they
//! contain `*` (any characters, `/` included) or `?` (one character).
//!
//! Rules read the request through its [`RequestView`], which has more than
//! one reading of the path (see [`crate::view`]). A rule that lets people in
//! without requirements (`bypass`, or `allow` with none) applies only when
//! every reading matches it, in the case written; a rule that protects
//! (`deny`, or `allow` with requirements) applies when any reading matches
//! it in any letter case, and a protecting prefix that ends in `/` also
//! covers the same path without it (`/admin/` protects `/admin`). A rule
//! with `methods` lets people in only when the proxy reported the method,
//! and protects whatever the method.
//!
//! The rules are filed once, when the policy is compiled, by host and by
//! a prefix's first path segment (`policy/index.rs`), so a request is
//! compared only with the rules that could match it, however many there
//! are; of those, the one written first still decides.

use serde::{Deserialize, Serialize};

use crate::settings::ConfigError;
use crate::criteria::{Criteria, Person, Written};
use crate::expr::{Expr, Scope, Vars};
use crate::claims::StoredClaims;
use crate::identity::Identity;
use crate::names::{self, GroupPaths};
use crate::view::{RequestView, normalize_path};

mod index;

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
    /// Portcullis roles (`identity.role()`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// App roles from the roles claim (`identity.roles()`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
}

/// What policy says of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A `bypass` rule: nobody needs to sign in, and no identity is sent.
    Bypass { rule: usize },
    /// Only a signed-in person can be judged (asked without one).
    SignIn,
    Allow { rule: Option<usize> },
    Deny { rule: Option<usize>, reason: String },
}

/// The rule a request falls under (`None`: `default_policy`), found once
/// per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched(pub Option<(usize, Action)>);

#[derive(Clone, Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Suffix(String),
}

#[derive(Clone, Debug)]
enum PathPattern {
    Prefix(String),
    Glob(String),
}

impl PathPattern {
    /// Whether `path` matches; with `protecting`, in any letter case and
    /// with a prefix's trailing `/` optional.
    fn matches(&self, path: &str, protecting: bool) -> bool {
        match self {
            PathPattern::Prefix(prefix) => {
                path_has_prefix(path, prefix, protecting)
                    || protecting
                        && prefix.len() > 1
                        && prefix.strip_suffix('/').is_some_and(|bare| bare.eq_ignore_ascii_case(path))
            }
            PathPattern::Glob(g) => glob(g.as_bytes(), path.as_bytes(), protecting),
        }
    }
}

/// A compiled rule: patterns parsed, names in normal form.
#[derive(Clone, Debug)]
struct Rule {
    host: Option<HostPattern>,
    path: Option<PathPattern>,
    methods: Vec<String>,
    action: Action,
    /// `deny`, or `allow` with requirements: matched by any reading of the
    /// request; other rules by every reading.
    protects: bool,
    /// Whom `allow` admits: the mapped user name or the person's own (for
    /// `users`), either email (for `emails` and `email_domains`).
    who: Criteria,
}

impl Rule {
    /// Whether this rule applies to `req`.
    fn matches(&self, req: &RequestView) -> bool {
        self.host.as_ref().is_none_or(|h| match h {
            HostPattern::Exact(e) => e.as_str() == req.host.as_ref(),
            HostPattern::Suffix(s) => req.host.len() > s.len() && req.host.ends_with(s.as_str()),
        }) && match req.method.as_deref() {
            _ if self.methods.is_empty() => true,
            // Not reported: it could be any method.
            None => self.protects,
            Some(m) => self.methods.iter().any(|x| x == m),
        } && match &self.path {
            None => true,
            Some(p) if self.protects => req.paths().any(|path| p.matches(path, true)),
            Some(p) => req.paths().all(|path| p.matches(path, false)),
        }
    }
}

/// The compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    default: DefaultPolicy,
    group_paths: GroupPaths,
    /// Some rule's expression reads `claims` (found once, at compile time).
    reads_claims: bool,
    /// The rules by host and path.
    index: index::Index,
}

impl Policy {
    /// Compiles `[[policy]]`; errors name the key at fault.
    pub fn new(default: DefaultPolicy, policy: &[PolicyRule], gp: GroupPaths) -> Result<Policy, ConfigError> {
        let mut rules = Vec::new();
        for (i, r) in policy.iter().enumerate() {
            let key = format!("policy[{i}]");
            let has_requirements = !(r.groups.is_empty()
                && r.roles.is_empty()
                && r.app_roles.is_empty()
                && r.users.is_empty()
                && r.emails.is_empty()
                && r.email_domains.is_empty()
                && r.expr.is_none());
            if has_requirements && r.action != Action::Allow {
                return Err(ConfigError::invalid(
                    &key,
                    "groups, roles, app_roles, users, emails, email_domains and expr apply only to action = \"allow\"",
                ));
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                match crate::view::normalize_method(m) {
                    Ok(m) => methods.push(m.into_owned()),
                    Err(_) => return Err(ConfigError::invalid(format!("{key}.methods[{j}]"), format!("`{m}` is not an HTTP method"))),
                }
            }
            let written = Written {
                groups: &r.groups,
                roles: &r.roles,
                app_roles: &r.app_roles,
                users: &r.users,
                emails: &r.emails,
                email_domains: &r.email_domains,
                expr: r.expr.as_deref(),
            };
            rules.push(Rule {
                host: r.host.as_deref().map(|h| host_pattern(&format!("{key}.host"), h)).transpose()?,
                path: r.path.as_deref().map(|p| path_pattern(&format!("{key}.path"), p)).transpose()?,
                methods,
                action: r.action,
                protects: r.action == Action::Deny || has_requirements,
                who: Criteria::compile(&key, written, gp, Scope::Request)?,
            });
        }
        let reads_claims = rules.iter().any(|r| r.who.expr().is_some_and(Expr::reads_claims));
        let index = index::Index::new(&rules);
        Ok(Policy { rules, default, group_paths: gp, reads_claims, index })
    }

    /// The index and action of the first rule matching this request.
    pub fn matching_rule(&self, req: &RequestView) -> Option<(usize, Action)> {
        if self.rules.is_empty() {
            return None;
        }
        self.index.first_match(&req.host, req.paths(), |i| self.rules[i].matches(req)).map(|i| (i, self.rules[i].action))
    }

    /// [`Policy::matching_rule`] found by comparing the request with every
    /// rule in turn, without the index: what the index must agree with.
    #[doc(hidden)]
    pub fn matching_rule_by_scan(&self, req: &RequestView) -> Option<(usize, Action)> {
        self.rules.iter().position(|r| r.matches(req)).map(|i| (i, self.rules[i].action))
    }

    /// Whether any rule's expression reads the session's claims (otherwise
    /// sessions need not keep them).
    pub fn reads_claims(&self) -> bool {
        self.reads_claims
    }

    /// The rule `req` falls under.
    pub fn rule_for(&self, req: &RequestView) -> Matched {
        Matched(self.matching_rule(req))
    }

    /// The one decision, for the verify endpoints and `explain` alike: for
    /// the request `req` (under `matched`, its [`Policy::rule_for`]) and
    /// `who` asks (`None`: nobody signed in yet). Expression errors are
    /// collected in `notes`.
    pub fn decide(
        &self,
        matched: Matched,
        req: &RequestView,
        who: Option<(&Identity, &StoredClaims)>,
        notes: &mut Vec<String>,
    ) -> Verdict {
        match (matched.0, who) {
            (Some((rule, Action::Bypass)), _) => Verdict::Bypass { rule },
            (_, None) => Verdict::SignIn,
            (matched, Some((identity, claims))) => self.judge(matched, req, identity, claims, notes),
        }
    }

    fn judge(
        &self,
        matched: Option<(usize, Action)>,
        req: &RequestView,
        identity: &Identity,
        claims: &StoredClaims,
        notes: &mut Vec<String>,
    ) -> Verdict {
        let Some((i, action)) = matched else {
            return match self.default {
                DefaultPolicy::Allow => Verdict::Allow { rule: None },
                DefaultPolicy::Deny => {
                    Verdict::Deny { rule: None, reason: "no policy rule matches and default_policy is deny".into() }
                }
            };
        };
        match action {
            Action::Bypass => Verdict::Bypass { rule: i },
            Action::Deny => Verdict::Deny { rule: Some(i), reason: format!("policy[{i}] denies this request") },
            Action::Allow => match self.unmet(&self.rules[i], req, identity, claims, notes) {
                None => Verdict::Allow { rule: Some(i) },
                Some(what) => Verdict::Deny { rule: Some(i), reason: format!("policy[{i}] requires {what}") },
            },
        }
    }

    /// The first requirement of `rule` the identity does not meet, if any.
    fn unmet(&self, rule: &Rule, req: &RequestView, id: &Identity, claims: &StoredClaims, notes: &mut Vec<String>) -> Option<String> {
        let groups = names::normalize_groups(id.groups(), self.group_paths);
        let roles = names::normalize_all(id.roles());
        let emails: Vec<String> = id.email().into_iter().chain(id.person_email()).map(names::normalize).collect();
        let users = [names::normalize(id.user()), names::normalize(id.person())];
        let person = Person { groups: &groups, role: Some(id.role()), app_roles: &roles, users: &users, emails: &emails };
        // Claims are read only for an expression (most rules have none).
        let claims = if rule.who.expr().is_some() { claims.read() } else { Default::default() };
        let vars = Vars {
            claims: &claims,
            groups: &groups,
            roles: &roles,
            user: id.user(),
            email: id.email().unwrap_or(""),
            request: Some((id.role(), id.person(), req)),
        };
        rule.who.unmet(&person, &vars, notes)
    }
}

fn host_pattern(key: &str, host: &str) -> Result<HostPattern, ConfigError> {
    let h = host.trim();
    let (suffix, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    // Read as request hosts are: lower case, no trailing dot, IDNs in ASCII.
    let name = crate::view::normalize_host(name).map(|n| n.into_owned()).unwrap_or_default();
    let valid = !name.is_empty()
        && name.split('.').all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !valid {
        return Err(ConfigError::invalid(
            key,
            format!("`{host}` is not a host name (write `photos.example.com` or `*.example.com`, without scheme, port or path)"),
        ));
    }
    Ok(if suffix { HostPattern::Suffix(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
}

fn path_pattern(key: &str, path: &str) -> Result<PathPattern, ConfigError> {
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::invalid(key, format!("`{path}` must be a path starting with /")));
    }
    if path.contains('#') {
        return Err(ConfigError::invalid(key, "matches the path only, without a fragment"));
    }
    let path = normalize_path(path).into_owned();
    if path.contains(['\\', ';']) || path.split('/').any(|s| s == "." || s == "..") {
        return Err(ConfigError::invalid(
            key,
            format!("`{path}` holds a \\, a ; or a dot segment, which requests that reach a rule never have"),
        ));
    }
    Ok(if path.contains(['*', '?']) { PathPattern::Glob(path) } else { PathPattern::Prefix(path) })
}

/// `/admin` matches `/admin`, `/admin/` and `/admin/x`, not `/administrator`;
/// `/admin/` matches `/admin/x`. With `fold`, in any ASCII letter case.
fn path_has_prefix(path: &str, prefix: &str, fold: bool) -> bool {
    let (p, x) = (path.as_bytes(), prefix.as_bytes());
    p.len() >= x.len()
        && if fold { p[..x.len()].eq_ignore_ascii_case(x) } else { &p[..x.len()] == x }
        && (prefix.ends_with('/') || p.len() == x.len() || p[x.len()] == b'/')
}

/// `*` matches any run of bytes (`/` included), `?` exactly one character;
/// with `fold`, letters match in any ASCII case.
fn glob(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let same = |a: u8, b: u8| a == b || fold && a.eq_ignore_ascii_case(&b);
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] != b'*' && same(pattern[p], text[t]) || pattern[p] == b'?') {
            if pattern[p] == b'?' {
                // One whole UTF-8 character.
                t += 1;
                while t < text.len() && (text[t] & 0xC0) == 0x80 {
                    t += 1;
                }
            } else {
                t += 1;
            }
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests;
