//! Expressions in rules: CEL (Common Expression Language), compiled once
//! at start and evaluated at login (identity rules) or per request (policy).
//!
//! CEL is not Turing-complete and has no side effects, so evaluating it on
//! every request is safe. An expression sees `claims` (the merged claims),
//! `groups` and `roles` (names in normal form: trimmed, lower case), `user`
//! and `email` (empty text when there is none); policy expressions also see
//! `role`, `person` and `request.host`, `request.path` (the normalised path), `request.raw_path`
//! (as the proxy reported it) and `request.method` (empty when not reported).
//! An expression must give `true` or `false`; an evaluation error (a
//! missing claim, a wrong type) counts as no match and is reported.

use std::sync::{Arc, LazyLock};

use cel::objects::Value;
use cel::{Context, Env, ExecutionError, Program};
use serde_json::json;

use crate::claims::Claims;
use crate::settings::ConfigError;
use crate::view::RequestView;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Where an expression is used, which decides the names it may refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `[[identity.rules]]`: evaluated once at login.
    Login,
    /// `[[policy]]`: evaluated on each request.
    Request,
}

/// The values an expression is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct Vars<'a> {
    pub claims: &'a Claims,
    pub groups: &'a [String],
    pub roles: &'a [String],
    pub user: &'a str,
    pub email: &'a str,
    /// Policy only: the portcullis role, the person's own user name, the request.
    pub request: Option<(&'a str, &'a str, &'a RequestView<'a>)>,
}

/// A compiled expression and the configuration key it came from.
#[derive(Clone)]
pub struct Expr {
    key: String,
    source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr").field("key", &self.key).field("source", &self.source).finish()
    }
}

impl Expr {
    /// Compiles `source`, found at configuration key `key`. A syntax error,
    /// an unknown name or an expression that cannot give true/false is a
    /// start-up error naming the key.
    pub fn compile(key: &str, source: &str, scope: Scope) -> Result<Expr, ConfigError> {
        if source.trim().is_empty() {
            return Err(ConfigError::invalid(key, "is empty"));
        }
        let program = ENV
            .compile(source)
            .map_err(|e| ConfigError::invalid(key, format!("is not a valid CEL expression: {}", one_line(&e.to_string()))))?;
        let expr = Expr { key: key.to_string(), source: source.to_string(), program: Arc::new(program) };
        expr.dry_run(scope)?;
        Ok(expr)
    }

    /// Whether the expression reads `claims` at all.
    pub fn reads_claims(&self) -> bool {
        self.program.references().has_variable("claims")
    }

    /// The configuration key, e.g. `identity.rules[2].expr`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Evaluates to true or false; `Err` explains why it could not.
    pub fn eval(&self, vars: &Vars<'_>) -> Result<bool, String> {
        match self.run(vars) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("gave {}, not true or false", type_name(&other))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Evaluates; an error counts as false and becomes a note.
    pub fn eval_noting(&self, vars: &Vars<'_>, notes: &mut Vec<String>) -> bool {
        match self.eval(vars) {
            Ok(b) => b,
            Err(err) => {
                notes.push(format!("{}: evaluation failed, counted as no match: {err}", self.key()));
                false
            }
        }
    }

    fn run(&self, vars: &Vars<'_>) -> Result<Value, ExecutionError> {
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        let bind = |ctx: &mut Context, name: &str, value: serde_json::Value| {
            ctx.add_variable(name, value).map_err(|e| ExecutionError::function_error("bind", e))
        };
        bind(&mut ctx, "claims", serde_json::Value::Object(vars.claims.clone()))?;
        bind(&mut ctx, "groups", json!(vars.groups))?;
        bind(&mut ctx, "roles", json!(vars.roles))?;
        bind(&mut ctx, "user", json!(vars.user))?;
        bind(&mut ctx, "email", json!(vars.email))?;
        if let Some((role, person, req)) = vars.request {
            bind(&mut ctx, "role", json!(role))?;
            bind(&mut ctx, "person", json!(person))?;
            bind(
                &mut ctx,
                "request",
                json!({"host": req.host, "path": req.path, "raw_path": req.raw_path, "method": req.method.as_deref().unwrap_or("")}),
            )?;
        }
        self.program.execute(&ctx)
    }

    /// Evaluates once against empty values to catch unknown names and
    /// expressions that give something other than true/false.
    fn dry_run(&self, scope: Scope) -> Result<(), ConfigError> {
        let claims = Claims::new();
        let req = RequestView::new("example.com", "/", Some("GET")).expect("a plain request");
        let vars = Vars {
            claims: &claims,
            groups: &[],
            roles: &[],
            user: "",
            email: "",
            request: (scope == Scope::Request).then_some(("", "", &req)),
        };
        match self.run(&vars) {
            Err(ExecutionError::UndeclaredReference(name)) => {
                let known = match scope {
                    Scope::Login => "claims, groups, roles, user, email",
                    Scope::Request => "claims, groups, roles, user, email, role, person, request",
                };
                let hint = if scope == Scope::Login && ["request", "role", "person"].contains(&name.as_str()) {
                    format!("`{name}` is only available in [[policy]] expressions")
                } else {
                    format!("unknown name `{name}`")
                };
                Err(ConfigError::invalid(&self.key, format!("{hint}; expressions here can use {known}")))
            }
            Ok(Value::Bool(_)) | Err(_) => Ok(()),
            Ok(other) => Err(ConfigError::invalid(
                &self.key,
                format!("must give true or false, but gives {}", type_name(&other)),
            )),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => "a number",
        Value::String(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "true/false",
        Value::Null => "null",
        _ => "a value",
    }
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        json!({"email": "pat@contractor.example", "n": 3, "https://x.example/tier": "gold"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn expressions_see_claims_groups_roles_user_email() {
        let c = claims();
        let groups = vec!["family".to_string()];
        let roles = vec!["photos.manage".to_string()];
        let vars = Vars { claims: &c, groups: &groups, roles: &roles, user: "pat", email: "pat@contractor.example", request: None };
        let cases = [
            (r#"claims.email.endsWith("@contractor.example")"#, Ok(true)),
            (r#""family" in groups && "photos.manage" in roles"#, Ok(true)),
            (r#"user == "pat" && email.startsWith("pat@")"#, Ok(true)),
            (r#"claims["https://x.example/tier"] == "gold" && claims.n > 2"#, Ok(true)),
            (r#"has(claims.missing)"#, Ok(false)),
        ];
        for (src, want) in cases {
            let e = Expr::compile("k", src, Scope::Login).unwrap();
            assert_eq!(e.eval(&vars), want, "{src}");
        }
        let e = Expr::compile("k", "claims.missing == 1", Scope::Login).unwrap();
        assert!(e.eval(&vars).unwrap_err().contains("missing"));
    }

    #[test]
    fn policy_expressions_see_the_request() {
        let c = claims();
        let req = RequestView::new("photos.example.com", "/api/x", Some("POST")).unwrap();
        let vars = Vars { claims: &c, groups: &[], roles: &[], user: "u", email: "", request: Some(("admin", "p", &req)) };
        let e = Expr::compile("k", r#"request.method == "POST" && request.path.startsWith("/api/") && role == "admin""#, Scope::Request).unwrap();
        assert_eq!(e.eval(&vars), Ok(true));
    }

    #[test]
    fn bad_expressions_are_start_up_errors_naming_the_key() {
        let cases = [
            ("claims.email.endsWith(", Scope::Login, "not a valid CEL expression"),
            ("usr == \"x\"", Scope::Login, "unknown name `usr`"),
            ("request.host == \"x\"", Scope::Login, "only available in [[policy]]"),
            ("user", Scope::Login, "must give true or false"),
            ("   ", Scope::Request, "is empty"),
        ];
        for (src, scope, want) in cases {
            let err = Expr::compile("identity.rules[2].expr", src, scope).unwrap_err().to_string();
            assert!(err.contains("identity.rules[2].expr") && err.contains(want), "{src}: {err}");
        }
        Expr::compile("k", "request.host == \"x\"", Scope::Request).unwrap();
    }
}
