//! `portcullis explain`: what portcullis would do with given claims, without
//! anyone logging in.
//!
//! It runs the same mapper and policy as the service and reports the mapped
//! identity, which identity rule, role-map entry and policy rule decided, the
//! headers a verify would answer with (upstream credentials masked, never
//! read), and the decision with its reason. `/oauth2/userinfo` shows the same
//! explanation for the signed-in user when `debug_explain = true`.
//!
//! Exit codes: 0 allow, 1 deny (or sign-in refused), 2 bad input.

use std::path::Path;
use std::process::ExitCode;

use hyper::header::HeaderMap;
use serde_json::{Value, json};

use crate::claims::{self, ClaimSource, StoredClaims};
use crate::config::Config;
use crate::headers::{IdentityHeaders, UpstreamHeaderValue};
use crate::identity::{Claims, Identity, Mapper, Mapping, RoleFrom};
use crate::policy::{Action, Policy, Verdict};
use crate::view::RequestView;

/// The parts of a running service an explanation needs.
pub struct Explainer<'a> {
    pub config: &'a Config,
    pub mapper: &'a Mapper,
    pub policy: &'a Policy,
    pub headers: &'a IdentityHeaders,
}

/// What portcullis would do, and why.
#[derive(Debug)]
pub struct Explanation {
    pub mapping: Mapping,
    pub request: Option<RequestView<'static>>,
    /// The first policy rule matching the request.
    pub policy_rule: Option<(usize, Action)>,
    pub allowed: bool,
    pub reason: String,
    /// Headers a verify would answer with; upstream credentials masked.
    pub headers: Vec<(String, String)>,
    /// Expression errors and ignored claims.
    pub notes: Vec<String>,
}

impl Explainer<'_> {
    /// Explains merged `claims`, and the decision for `request` if given.
    pub fn explain(&self, claims: &Claims, request: Option<&RequestView<'static>>) -> Explanation {
        let mapping = self.mapper.explain(claims);
        let mut notes = mapping.notes.clone();
        let matched = request.map(|r| self.policy.rule_for(r));
        let policy_rule = matched.and_then(|m| m.0);
        let mut headers = Vec::new();
        let stored = StoredClaims::new(claims);
        // The same decision as a verify's, for the person these claims make.
        let who = mapping.result.as_ref().ok().map(|identity| (identity, &stored));
        let verdict = match (matched, request) {
            (Some(m), Some(req)) => Some(self.policy.decide(m, req, who, &mut notes)),
            _ => None,
        };
        let (allowed, reason) = match (&mapping.result, verdict) {
            (_, Some(Verdict::Bypass { rule })) => {
                (true, format!("policy[{rule}] is a bypass: no sign-in needed, and no identity headers are sent"))
            }
            (Err(refusal), _) => (false, format!("sign-in refused: {}", refusal.reason)),
            (Ok(identity), None) => {
                headers = self.headers_for(identity);
                (true, "sign-in succeeds (give a URL to see the policy decision for a request)".to_string())
            }
            (Ok(identity), Some(Verdict::Allow { rule })) => {
                headers = self.headers_for(identity);
                let why = match rule {
                    Some(i) => format!("policy[{i}] allows it: its requirements are met"),
                    None => "no policy rule matches; default_policy = allow admits any signed-in user".to_string(),
                };
                (true, why)
            }
            (Ok(_), Some(Verdict::Deny { reason, .. })) => (false, reason),
            (Ok(_), Some(Verdict::SignIn)) => unreachable!("a signed-in person is judged"),
        };
        Explanation { mapping, request: request.cloned(), policy_rule, allowed, reason, headers, notes }
    }

    /// The identity headers and the user's upstream headers, masked.
    fn headers_for(&self, identity: &Identity) -> Vec<(String, String)> {
        let mut map = HeaderMap::new();
        self.headers.write(identity, &mut map);
        let mut out: Vec<(String, String)> = (self.config.headers.all().into_iter())
            .map(|(_, name)| {
                let value = map.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                (name.to_string(), value.unwrap_or_default())
            })
            .collect();
        for (name, source) in self.config.upstream_headers.get(identity.user()).into_iter().flatten() {
            let from = match source {
                UpstreamHeaderValue::File(p) => format!("file {}", p.display()),
                UpstreamHeaderValue::Env(v) => format!("env {v}"),
            };
            out.push((name.clone(), format!("******** (secret from {from})")));
        }
        out
    }
}

impl Explanation {
    /// The explanation as JSON (`--json`, `/oauth2/userinfo`).
    pub fn to_json(&self, config: &Config) -> Value {
        let m = &self.mapping;
        json!({
            "identity": m.result.as_ref().ok(),
            "refused": m.result.as_ref().err().map(|r| r.reason.clone()),
            "identity_rule": m.rule.map(|i| json!({"index": i, "key": format!("identity.rules[{i}]"), "rule": config.identity.rules.get(i)})),
            "role_from": m.role_from.map(role_from_key),
            "request": self.request.as_ref().map(|r| json!({
                "method": r.method,
                "host": r.host,
                "raw_path": r.raw_path,
                "path": r.path,
                "decoded_path": r.decoded.as_deref().unwrap_or(&r.path),
            })),
            "policy_rule": self.policy_rule.map(|(i, a)| json!({"index": i, "key": format!("policy[{i}]"), "action": a, "rule": config.policy.get(i)})),
            "headers": self.headers.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "decision": if self.allowed { "allow" } else { "deny" },
            "reason": self.reason,
            "notes": self.notes,
        })
    }

    /// The explanation as text for people.
    pub fn to_text(&self, config: &Config) -> String {
        let m = &self.mapping;
        let mut out = String::new();
        let mut line = |label: &str, value: &str| out.push_str(&format!("{label:<10}{value}\n"));
        match &m.result {
            Ok(id) => {
                let rule = match m.rule {
                    Some(i) => format!("  (identity.rules[{i}] matched)"),
                    None => "  (no identity rule matched)".to_string(),
                };
                line("user", &format!("{}{rule}", id.user()));
                line("person", id.person());
                line("subject", id.subject());
                line("email", id.email().unwrap_or("-"));
                line("name", id.name().unwrap_or("-"));
                line("groups", &list(id.groups()));
                line("roles", &list(id.roles()));
                let from = m.role_from.map(|r| format!("  ({})", role_from_key(r))).unwrap_or_default();
                line("role", &format!("{}{from}", id.role()));
            }
            Err(refusal) => {
                if let Some(i) = m.rule {
                    line("rule", &format!("identity.rules[{i}] matched"));
                }
                line("refused", &refusal.reason);
            }
        }
        if let Some(r) = &self.request {
            line("request", &format!("{} {}{}", r.method.as_deref().unwrap_or("-"), r.host, r.raw_path));
            // Every reading policy judged (see `crate::view`).
            line("path", &r.path);
            line("decoded", r.decoded.as_deref().unwrap_or(&r.path));
            let policy = match self.policy_rule {
                Some((i, a)) => {
                    let rule = config.policy.get(i).map(|r| serde_json::to_string(r).unwrap_or_default()).unwrap_or_default();
                    format!("policy[{i}] matched ({}): {rule}", action_name(a))
                }
                None => format!("no policy rule matched (default_policy = {})", action_name_default(config)),
            };
            line("policy", &policy);
        }
        if !self.headers.is_empty() {
            out.push_str("headers\n");
            for (n, v) in &self.headers {
                out.push_str(&format!("  {n}: {v}\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note      {note}\n"));
        }
        out.push_str(&format!("{:<10}{}: {}\n", "decision", if self.allowed { "allow" } else { "deny" }, self.reason));
        out
    }
}

fn list(items: crate::identity::Names<'_>) -> String {
    if items.len() == 0 { "-".to_string() } else { items.collect::<Vec<_>>().join(", ") }
}

fn role_from_key(r: RoleFrom) -> String {
    match r {
        RoleFrom::Rule(i) => format!("identity.rules[{i}]"),
        RoleFrom::RoleMap(i) => format!("role_map[{i}]"),
        RoleFrom::Default => "identity.default_role".to_string(),
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Bypass => "bypass",
        Action::Deny => "deny",
        Action::Allow => "allow",
    }
}

fn action_name_default(config: &Config) -> &'static str {
    match config.default_policy {
        crate::policy::DefaultPolicy::Allow => "allow",
        crate::policy::DefaultPolicy::Deny => "deny",
    }
}

/// The request policy sees for `url` and `method`, read as `/auth/nginx`
/// reads `X-Original-URL` and `X-Original-Method`.
pub fn request_info(url: &str, method: &str) -> Result<RequestView<'static>, String> {
    use hyper::header::HeaderValue;
    let mut headers = HeaderMap::new();
    let value = |v: &str| HeaderValue::from_str(v).map_err(|_| format!("`{v}` cannot be sent in a header"));
    headers.insert("x-original-url", value(url)?);
    headers.insert("x-original-method", value(method)?);
    let flavor = crate::request::Flavor::Nginx;
    let refused = |reason: &str| format!("`{method} {url}` would be refused with 400 Bad Request: {reason}");
    let reported = crate::request::Reported::read(&headers);
    let original = crate::request::original_url(&reported, flavor, "https").map_err(refused)?;
    let method = crate::request::original_method(&reported, flavor).map_err(refused)?;
    let view = original.view().map_err(refused)?;
    Ok(RequestView { method, ..view }.into_owned())
}

/// Reads a claims file: either the merged claims as one JSON object, or the
/// sources as `{"id_token": {...}, "userinfo": {...}, "access_token": ...}`
/// (the access token as claims or as the JWT itself), merged as at login.
pub fn parse_claims(text: &str, mapper: &Mapper) -> Result<Claims, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("the claims are not valid JSON ({e})"))?;
    let Value::Object(top) = value else {
        return Err("the claims must be a JSON object".into());
    };
    let is_sources = top.contains_key("id_token") && top.keys().all(|k| ["id_token", "userinfo", "access_token"].contains(&k.as_str()));
    if !is_sources {
        return Ok(top);
    }
    let object = |key: &str| match top.get(key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(_) => Err(format!("`{key}` must be a JSON object of claims")),
    };
    let id = object("id_token")?.unwrap_or_default();
    let userinfo = object("userinfo")?;
    let access = match top.get("access_token") {
        Some(Value::String(jwt)) => claims::access_token_claims(jwt),
        _ => object("access_token")?,
    };
    let mut others = Vec::new();
    if let Some(u) = &userinfo {
        others.push((ClaimSource::Userinfo, u));
    }
    if let Some(a) = &access {
        others.push((ClaimSource::AccessToken, a));
    }
    Ok(mapper.merge(&id, &others))
}

/// The `explain` subcommand.
pub fn run(config: Option<&Path>, claims_file: &Path, url: Option<&str>, method: &str, as_json: bool) -> ExitCode {
    match run_inner(config, claims_file, url, method) {
        Ok((explanation, config)) => {
            if as_json {
                println!("{}", serde_json::to_string_pretty(&explanation.to_json(&config)).expect("JSON"));
            } else {
                print!("{}", explanation.to_text(&config));
            }
            if explanation.allowed { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("portcullis explain: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(config: Option<&Path>, claims_file: &Path, url: Option<&str>, method: &str) -> Result<(Explanation, Config), String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let rules = crate::rules::Rules::new(config).map_err(|e| e.to_string())?;
    let crate::rules::Rules { config, mapper, policy, headers, .. } = rules;
    let text = std::fs::read_to_string(claims_file)
        .map_err(|e| format!("cannot read claims file {}: {e}", claims_file.display()))?;
    let claims = parse_claims(&text, &mapper).map_err(|e| format!("{}: {e}", claims_file.display()))?;
    let request = url.map(|u| request_info(u, method)).transpose()?;
    let explanation = Explainer { config: &config, mapper: &mapper, policy: &policy, headers: &headers }.explain(&claims, request.as_ref());
    Ok((explanation, config))
}
