//! Who a rule is about: the lists `[[identity.rules]]` and `[[policy]]`
//! entries match people by (`groups`, `roles`, `app_roles`, `users`,
//! `emails`, `email_domains`, `expr`), compiled once, in normal form, and
//! matched the same way: any of the names within a list, all of the lists a
//! rule sets.
//!
//! What a person is matched on differs by where the rule stands, and the
//! caller says it with a [`Person`]: an identity rule runs at sign-in,
//! before any mapping, so `users` and `emails` are the person's own; a
//! policy rule runs on each request, after mapping, so `users` is the
//! mapped user name or the person's own, and `emails` either email.

use crate::expr::{Expr, Scope, Vars};
use crate::names::{self, GroupPaths, NameSet};
use crate::settings::ConfigError;

/// The lists as written in a rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written<'a> {
    pub groups: &'a [String],
    pub roles: &'a [String],
    pub app_roles: &'a [String],
    pub users: &'a [String],
    pub emails: &'a [String],
    pub email_domains: &'a [String],
    pub expr: Option<&'a str>,
}

/// The lists compiled: names in normal form, in the order written, each
/// a [`NameSet`] (a long list is asked with a hash look-up, not read
/// through); the expression compiled.
#[derive(Clone, Debug)]
pub struct Criteria {
    groups: NameSet,
    roles: NameSet,
    app_roles: NameSet,
    users: NameSet,
    emails: NameSet,
    email_domains: NameSet,
    expr: Option<Expr>,
}

/// What a person is matched on, in normal form.
pub struct Person<'a> {
    pub groups: &'a [String],
    /// `None` where roles are not yet known (at sign-in).
    pub role: Option<&'a str>,
    pub app_roles: &'a [String],
    pub users: &'a [String],
    pub emails: &'a [String],
}

impl Criteria {
    /// Compiles the lists of the rule at `key` (e.g. `policy[2]`); an empty
    /// name or one with control characters is an error naming it.
    pub fn compile(key: &str, w: Written<'_>, group_paths: GroupPaths, scope: Scope) -> Result<Criteria, ConfigError> {
        let list = |field: &str, v: &[String]| check_names(&format!("{key}.{field}"), v).map(|v| names::normalize_all(&v));
        Ok(Criteria {
            groups: NameSet::new(names::normalize_groups(&check_names(&format!("{key}.groups"), w.groups)?, group_paths)),
            roles: NameSet::new(list("roles", w.roles)?),
            app_roles: NameSet::new(list("app_roles", w.app_roles)?),
            users: NameSet::new(list("users", w.users)?),
            emails: NameSet::new(list("emails", w.emails)?),
            email_domains: NameSet::new(
                list("email_domains", w.email_domains)?.into_iter().map(|d| d.trim_start_matches('@').to_string()).collect(),
            ),
            expr: w.expr.map(|e| Expr::compile(&format!("{key}.expr"), e, scope)).transpose()?,
        })
    }

    /// The user names the rule lists, in normal form (empty: it sets none).
    pub fn users(&self) -> &[String] {
        self.users.names()
    }

    /// The emails the rule lists, in normal form (empty: it sets none).
    pub fn emails(&self) -> &[String] {
        self.emails.names()
    }

    /// The expression, if the rule has one.
    pub fn expr(&self) -> Option<&Expr> {
        self.expr.as_ref()
    }

    /// The first list `person` is in none of, said for a log line; `None`
    /// when every list the rule sets is met. The expression, last, is
    /// evaluated against `vars` (its errors go to `notes`).
    pub fn unmet(&self, person: &Person<'_>, vars: &Vars<'_>, notes: &mut Vec<String>) -> Option<String> {
        let listed = |l: &NameSet| l.names().join(", ");
        if !self.groups.is_empty() && !self.groups.any_in(person.groups) {
            return Some(format!("membership of one of the groups {}", listed(&self.groups)));
        }
        if !self.roles.is_empty() {
            let role = person.role.unwrap_or_default();
            if !self.roles.contains(&names::normalize(role)) {
                return Some(format!("one of the roles {} (the user's role is {role})", listed(&self.roles)));
            }
        }
        if !self.app_roles.is_empty() && !self.app_roles.any_in(person.app_roles) {
            return Some(format!("one of the app roles {}", listed(&self.app_roles)));
        }
        if !self.users.is_empty() && !self.users.any_in(person.users) {
            return Some(format!("one of the users {}", listed(&self.users)));
        }
        if !self.emails.is_empty() && !self.emails.any_in(person.emails) {
            return Some(format!("one of the emails {}", listed(&self.emails)));
        }
        if !self.email_domains.is_empty()
            && !person.emails.iter().filter_map(|e| names::email_domain(e)).any(|d| self.email_domains.contains(&d))
        {
            return Some(format!("an email in one of the domains {}", listed(&self.email_domains)));
        }
        match &self.expr {
            Some(e) if !e.eval_noting(vars, notes) => Some(format!("its expression ({}) to be true", e.key())),
            _ => None,
        }
    }
}

/// A value that names someone: not empty, and sent in a header exactly as
/// written (no control characters, not too long).
pub fn check_value(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(key, "is empty"));
    }
    if !passes_unchanged(value.trim()) {
        return Err(ConfigError::invalid(key, "contains control characters or is too long"));
    }
    Ok(())
}

/// [`check_value`] for each name of a list at `key`.
pub fn check_names(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    for (i, n) in list.iter().enumerate() {
        check_value(&format!("{key}[{i}]"), n)?;
    }
    Ok(list.to_vec())
}

/// True when `text` goes into a header exactly as it is: no control
/// characters, no surrounding white space, not too long. A user name or
/// email that a header would alter could collide with another.
pub fn passes_unchanged(text: &str) -> bool {
    crate::header_value::sanitize(text).as_bytes() == text.as_bytes()
}
