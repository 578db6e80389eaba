//! From claims to a user: who someone is as the protected apps will see them.
//!
//! The provider's claim sources (ID token, userinfo, the access token when
//! it is a JWT that verifies) are merged into one [`Claims`] map in the order
//! `identity.claim_sources` gives, then a [`Mapper`] compiled from the
//! `[identity]` section and `[[role_map]]` turns them into an [`Identity`]:
//!
//! 1. the person's user name (first of `username_claims`), email, name,
//!    groups (`groups_claim`), app roles (`roles_claim`) and Entra
//!    directory roles (`wids`), each kept in its own namespace;
//! 2. refusal when group overage hides the groups, or when the person is in
//!    none of `required_groups`;
//! 3. the first matching `[[identity.rules]]` entry may map the person onto
//!    another user (a shared account), email, name, role, and add groups
//!    (the rules that list users or emails are found from the person's own,
//!    see `index.rs`; the first in rule order still decides);
//! 4. the role: the rule's, else the first matching `[[role_map]]` entry,
//!    else `default_role`; role `none` refuses entry.
//!
//! The identity is computed once at login and kept in the session.

use serde::{Deserialize, Serialize};

pub use crate::claims::Claims;
use crate::claims::{self, ClaimSource};
use crate::settings::ConfigError;
use crate::criteria::{Criteria, Person, Written, passes_unchanged};
use crate::expr::{Scope, Vars};
use crate::names::{self, GroupPaths, NameSet};

mod config;
mod index;
mod packed;
pub use config::{IdentityConfig, IdentityRule, RoleMapEntry};
use config::{check_names, check_paths, check_role, check_value};
pub use packed::{Identity, Names};

/// The role that refuses entry.
pub const ROLE_NONE: &str = "none";

/// A mapped identity in its plain form: what a login builds, and what is
/// serialized. Sessions keep it packed, as an [`Identity`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct IdentityParts {
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
    /// The person's own email (when trusted), for policy `emails`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_email: Option<String>,
    /// What the groups header shows when it differs from `groups` (with
    /// Microsoft Graph: names rather than IDs, as `graph.groups_header` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_groups: Option<Vec<String>>,
}

/// Why a login was refused (shown to the user and written to the audit log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub reason: String,
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Refusal {
        Refusal { reason: reason.into() }
    }
}

/// Where the identity's role came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleFrom {
    /// `identity.rules[i].role`.
    Rule(usize),
    /// `role_map[i]`.
    RoleMap(usize),
    /// `identity.default_role`.
    Default,
}

/// The outcome of mapping, with what decided it (for `explain`).
#[derive(Clone, Debug)]
pub struct Mapping {
    pub result: Result<Identity, Refusal>,
    /// The `identity.rules` entry that matched.
    pub rule: Option<usize>,
    pub role_from: Option<RoleFrom>,
    /// Things an administrator should know: expression errors, ignored claims.
    pub notes: Vec<String>,
}

/// A compiled `[[identity.rules]]` entry: names in normal form.
#[derive(Clone, Debug)]
struct Rule {
    /// Whom it is about: the person's own user name and email, as the
    /// provider gave them (at sign-in nothing is mapped yet).
    who: Criteria,
    config: IdentityRule,
}

#[derive(Clone, Debug)]
enum RoleMatch {
    Group(String),
    AppRole(String),
    DirectoryRole(String),
}

/// The compiled `[identity]` section and `[[role_map]]`.
#[derive(Clone, Debug)]
pub struct Mapper {
    config: IdentityConfig,
    required_groups: NameSet,
    rules: Vec<Rule>,
    /// The rules by the users and emails they list.
    index: index::Index,
    role_map: Vec<(RoleMatch, String)>,
}

impl Mapper {
    /// Compiles the rules and expressions; errors name the key at fault.
    pub fn new(c: &IdentityConfig, role_map_entries: &[RoleMapEntry]) -> Result<Mapper, ConfigError> {
        if c.username_claims.is_empty() {
            return Err(ConfigError::invalid("identity.username_claims", "must name at least one claim"));
        }
        check_paths("identity.username_claims", &c.username_claims)?;
        check_paths("identity.groups_claim", &c.groups_claim.0)?;
        check_paths("identity.roles_claim", &c.roles_claim.0)?;
        if c.groups_claim.0.is_empty() {
            return Err(ConfigError::invalid("identity.groups_claim", "must name at least one claim"));
        }
        if c.claim_sources.is_empty() {
            return Err(ConfigError::invalid("identity.claim_sources", "must list at least one source"));
        }
        for (i, s) in c.claim_sources.iter().enumerate() {
            if c.claim_sources[..i].contains(s) {
                return Err(ConfigError::invalid("identity.claim_sources", "lists a source twice"));
            }
        }
        check_role("identity.default_role", &c.default_role)?;
        let gp = c.group_paths;
        let required_groups = check_names("identity.required_groups", &c.required_groups)?;
        let required_groups = NameSet::new(names::normalize_groups(&required_groups, gp));

        let mut rules = Vec::new();
        for (i, r) in c.rules.iter().enumerate() {
            let key = format!("identity.rules[{i}]");
            if r.emails.is_empty() && r.users.is_empty() && r.groups.is_empty() && r.email_domains.is_empty() && r.expr.is_none() {
                return Err(ConfigError::invalid(
                    &key,
                    "matches nothing: set emails, users, groups, email_domains or expr (use expr = \"true\" to match everyone)",
                ));
            }
            check_value(&format!("{key}.user"), &r.user)?;
            if !names::is_normal(r.user.trim()) {
                return Err(ConfigError::invalid(
                    format!("{key}.user"),
                    "changes under Unicode NFKC (it contains compatibility characters or a decomposed accent); write the letters themselves",
                ));
            }
            if let Some(email) = &r.email {
                check_value(&format!("{key}.email"), email)?;
            }
            if let Some(name) = &r.name {
                check_value(&format!("{key}.name"), name)?;
            }
            if let Some(role) = &r.role {
                check_role(&format!("{key}.role"), role)?;
            }
            check_names(&format!("{key}.add_groups"), &r.extra_groups)?;
            let written = Written {
                groups: &r.groups,
                users: &r.users,
                emails: &r.emails,
                email_domains: &r.email_domains,
                expr: r.expr.as_deref(),
                ..Written::default()
            };
            rules.push(Rule { who: Criteria::compile(&key, written, gp, Scope::Login)?, config: r.clone() });
        }

        let mut role_map = Vec::new();
        for (i, e) in role_map_entries.iter().enumerate() {
            let key = format!("role_map[{i}]");
            let m = match (&e.group, &e.app_role, &e.directory_role) {
                (Some(g), None, None) => RoleMatch::Group(names::normalize_group(g, gp)),
                (None, Some(r), None) => RoleMatch::AppRole(names::normalize(r)),
                (None, None, Some(w)) => RoleMatch::DirectoryRole(names::normalize(w)),
                _ => return Err(ConfigError::invalid(&key, "set exactly one of group, app_role or directory_role")),
            };
            if matches!(&m, RoleMatch::Group(n) | RoleMatch::AppRole(n) | RoleMatch::DirectoryRole(n) if n.is_empty()) {
                return Err(ConfigError::invalid(&key, "the name to match is empty"));
            }
            check_role(&format!("{key}.role"), &e.role)?;
            role_map.push((m, e.role.trim().to_string()));
        }
        let index = index::Index::new(rules.iter().map(|r| &r.who));
        Ok(Mapper { config: c.clone(), required_groups, rules, index, role_map })
    }

    /// The configured order of claim sources.
    pub fn claim_sources(&self) -> &[ClaimSource] {
        &self.config.claim_sources
    }

    /// Merges the provider's answers into one claims map: sources in the
    /// configured order, a later one filling what an earlier one lacks,
    /// groups and roles united across all of them. `access` holds the
    /// access token's claims only when [`crate::oidc`] verified the token.
    pub fn collect_claims(&self, id_token: &Claims, userinfo: Option<&Claims>, access: Option<&Claims>) -> Claims {
        let mut others = Vec::new();
        if let Some(u) = userinfo {
            others.push((ClaimSource::Userinfo, u));
        }
        if let Some(a) = access {
            others.push((ClaimSource::AccessToken, a));
        }
        self.merge(id_token, &others)
    }

    /// As [`Mapper::collect_claims`], with every source already decoded.
    pub fn merge(&self, id_token: &Claims, others: &[(ClaimSource, &Claims)]) -> Claims {
        let unite: Vec<&str> = self.config.groups_claim.0.iter().chain(&self.config.roles_claim.0).map(String::as_str).collect();
        claims::merge_sources(&self.config.claim_sources, id_token, others, &unite)
    }

    /// The whole derivation at login and refresh: merge the provider's
    /// answers, let Microsoft Graph fill in the groups (when enabled), map.
    /// `access_claims` are the verified access token's claims; the token
    /// itself is for Graph. Returns the claims kept in the session with the
    /// outcome.
    pub async fn derive(
        &self,
        graph: &crate::graph::Graph,
        id_token: &Claims,
        userinfo: Option<&Claims>,
        access_claims: Option<&Claims>,
        access_token: Option<&str>,
    ) -> (Claims, Result<Identity, Refusal>) {
        let mut claims = self.collect_claims(id_token, userinfo, access_claims);
        let header_groups = graph.enrich(&mut claims, access_token, !self.required_groups.is_empty()).await;
        let result = self.map(&claims).map(|identity| match header_groups {
            None => identity,
            header_groups => IdentityParts { header_groups, ..identity.to_parts() }.into(),
        });
        (claims, result)
    }

    /// Maps merged claims to an identity, or refuses the login. Expression
    /// errors are logged.
    pub fn map(&self, claims: &Claims) -> Result<Identity, Refusal> {
        let mapping = self.explain(claims);
        for note in &mapping.notes {
            tracing::warn!(event = "identity_note", "{note}");
        }
        mapping.result
    }

    /// Whether an identity mapped earlier (a personal access token's,
    /// kept from when it was made) would still be let in by these rules:
    /// a member of one of `required_groups`, and not of role `none`.
    pub fn admits(&self, identity: &Identity) -> Result<(), Refusal> {
        if identity.role().eq_ignore_ascii_case(ROLE_NONE) {
            return Err(Refusal::new("the account has role `none`"));
        }
        if !self.required_groups.is_empty() {
            let groups = names::normalize_groups(identity.groups(), self.config.group_paths);
            if !self.required_groups.any_in(&groups) {
                return Err(Refusal::new("the person is not a member of any group allowed to sign in here (identity.required_groups)"));
            }
        }
        Ok(())
    }

    /// Maps merged claims and says which rule and role-map entry decided.
    pub fn explain(&self, claims: &Claims) -> Mapping {
        self.explain_with(claims, false)
    }

    /// [`Mapper::explain`] with the identity rules compared with the
    /// person one by one, without the index: what the index must agree with.
    #[doc(hidden)]
    pub fn explain_by_scan(&self, claims: &Claims) -> Mapping {
        self.explain_with(claims, true)
    }

    fn explain_with(&self, claims: &Claims, scan: bool) -> Mapping {
        let mut m = Mapping { result: Err(Refusal::new("")), rule: None, role_from: None, notes: Vec::new() };
        m.result = self.map_inner(claims, &mut m, scan);
        m
    }

    fn map_inner(&self, claims: &Claims, m: &mut Mapping, scan: bool) -> Result<Identity, Refusal> {
        let c = &self.config;
        let gp = c.group_paths;
        let subject = claims::text(claims, "sub").unwrap_or_default();
        if subject.is_empty() {
            return Err(Refusal::new("the identity provider sent no `sub` claim"));
        }
        let email = self.trusted_email(claims, &mut m.notes);
        // The email is a user name only when it is trusted: anyone can sign
        // up at many providers with somebody else's address.
        let person = c
            .username_claims
            .iter()
            .filter(|p| p.as_str() != "email" || email.is_some())
            .find_map(|p| claims::text(claims, p).filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| subject.clone());
        if !passes_unchanged(&person) {
            return Err(Refusal::new(
                "your user name contains characters (control characters, surrounding spaces or too many characters) that cannot be passed on safely",
            ));
        }
        if !names::is_normal(&person) {
            return Err(Refusal::new(
                "your user name contains characters that stand for other letters (Unicode compatibility characters such as the \
                 Kelvin sign or full-width letters, or a decomposed accent), so it could pass for someone else's; \
                 ask your administrator to change it at the identity provider",
            ));
        }
        let name = claims::text(claims, "name").filter(|n| !n.trim().is_empty());

        let groups = self.list(claims, &c.groups_claim.0, gp, "groups", &mut m.notes);
        let roles = self.list(claims, &c.roles_claim.0, GroupPaths::Full, "roles", &mut m.notes);
        let wids = names::normalize_all(&claims::values(claims::lookup(claims, "wids")));
        let groups_n = names::normalize_groups(&groups, gp);
        let roles_n = names::normalize_all(&roles);

        if groups.is_empty() && claims::group_overage(claims, &c.groups_claim.0) {
            return Err(Refusal::new(
                "your group membership could not be resolved: the identity provider left the groups out of the token \
                 because there are too many (group overage); ask your administrator to limit the groups sent to this application",
            ));
        }
        if !self.required_groups.is_empty() && !self.required_groups.any_in(&groups_n) {
            return Err(Refusal::new("you are not a member of any group allowed to sign in here (identity.required_groups)"));
        }

        let vars = Vars {
            claims,
            groups: &groups_n,
            roles: &roles_n,
            user: &person,
            email: email.as_deref().unwrap_or(""),
            request: None,
        };
        // Whom identity rules are about: the person's own user name and
        // email, as the provider gave them (at sign-in nothing is mapped yet).
        let user_n = names::normalize(&person);
        let email_n = email.as_deref().map(names::normalize).filter(|e| !e.is_empty());
        let who = Person {
            groups: &groups_n,
            role: None,
            app_roles: &[],
            users: std::slice::from_ref(&user_n),
            emails: email_n.as_slice(),
        };
        let notes = &mut m.notes;
        let mut matches = |i: usize| self.rules[i].who.unmet(&who, &vars, notes).is_none();
        let rule = match scan {
            false => self.index.first_match(&user_n, email_n.as_deref(), matches),
            true => (0..self.rules.len()).find(|&i| matches(i)),
        };
        m.rule = rule;
        let rule = rule.map(|i| &self.rules[i].config);

        let mut identity = IdentityParts {
            user: rule.map_or_else(|| person.clone(), |r| r.user.trim().to_string()),
            email: rule.and_then(|r| r.email.clone()).or_else(|| email.clone()),
            name: rule.and_then(|r| r.name.clone()).or(name),
            groups,
            roles,
            role: String::new(),
            subject,
            person,
            person_email: email,
            header_groups: None,
        };
        let mut groups_n = groups_n;
        for g in rule.map(|r| r.extra_groups.as_slice()).unwrap_or_default() {
            let n = names::normalize_group(g, gp);
            if !groups_n.contains(&n) {
                groups_n.push(n);
                identity.groups.push(g.trim().to_string());
            }
        }

        let (role, from) = match (rule.and_then(|r| r.role.as_ref()), m.rule) {
            (Some(role), Some(i)) => (role.trim().to_string(), RoleFrom::Rule(i)),
            _ => match self.role_map.iter().position(|(rm, _)| match rm {
                RoleMatch::Group(g) => groups_n.contains(g),
                RoleMatch::AppRole(r) => roles_n.contains(r),
                RoleMatch::DirectoryRole(w) => wids.contains(w),
            }) {
                Some(i) => (self.role_map[i].1.clone(), RoleFrom::RoleMap(i)),
                None => (c.default_role.trim().to_string(), RoleFrom::Default),
            },
        };
        m.role_from = Some(from);
        if role.eq_ignore_ascii_case(ROLE_NONE) {
            return Err(Refusal::new("your account has no role that may sign in here (role `none`)"));
        }
        identity.role = role;
        Ok(identity.into())
    }

    /// The `email` claim when it may say who someone is: the provider
    /// says `email_verified = true` (or the claim is missing and
    /// `trust_unverified_email` is on, or `allow_unverified_email` is on),
    /// and it passes into a header unchanged. Only this email is sent,
    /// matched by rules and policy, or used as the user name.
    fn trusted_email(&self, claims: &Claims, notes: &mut Vec<String>) -> Option<String> {
        let email = claims::text(claims, "email").filter(|e| !e.trim().is_empty())?;
        let c = &self.config;
        let verified = match claims.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) => Some(s.eq_ignore_ascii_case("true")),
            None => None,
            Some(_) => Some(false),
        };
        match verified {
            Some(true) => {}
            _ if c.allow_unverified_email => {}
            None if c.trust_unverified_email => {}
            None => {
                notes.push(
                    "the email is ignored: the provider does not say it is verified (no email_verified claim; \
                     see identity.trust_unverified_email)"
                        .into(),
                );
                return None;
            }
            Some(false) => {
                notes.push("the email is ignored: the provider says email_verified = false (see identity.allow_unverified_email)".into());
                return None;
            }
        }
        if !passes_unchanged(&email) {
            notes.push("the email is ignored: it contains characters that cannot be passed on safely".into());
            return None;
        }
        Some(email)
    }

    /// A list claim's values from every path, without duplicates and without
    /// values that could not be passed on unchanged.
    fn list(&self, claims: &Claims, paths: &[String], gp: GroupPaths, what: &str, notes: &mut Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        for path in paths {
            for v in claims::values(claims::lookup(claims, path)) {
                if !passes_unchanged(&v) {
                    notes.push(format!("one of the {what} is ignored: it contains characters that cannot be passed on safely"));
                    continue;
                }
                let n = names::normalize_group(&v, gp);
                if !seen.contains(&n) {
                    seen.push(n);
                    out.push(v);
                }
            }
        }
        out
    }
}

/// Merges claim sources in order: a later source fills what an earlier one
/// lacks; list-valued `groups` are united. ([`Mapper::merge`] unites the
/// configured groups and roles claims.)
pub fn merge_claims(sources: &[&Claims]) -> Claims {
    claims::merge(sources, &["groups"])
}


#[cfg(test)]
mod tests;
