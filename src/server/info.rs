//! What portcullis tells about itself and the signed-in user:
//! `/oauth2/userinfo` (with the `debug_explain` page), `/readyz`,
//! `/healthz` and `/metrics`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::respond::{Body, Failure, Step, json, text};
use super::{App, query};
use crate::identity::Identity;
use crate::session::Session;

pub(super) async fn userinfo(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, Failure> {
    match super::session::load(app, req.headers()).await {
        Ok(Some(loaded)) if app.config.debug_explain => debug_explain(app, req, &loaded.session),
        Ok(Some(loaded)) => Ok(json(StatusCode::OK, &identity_json(&loaded.session.identity))),
        Ok(None) => Err(Failure::NotSignedIn),
        Err(_) => Err(Failure::Unavailable(Step::Userinfo)),
    }
}

/// `debug_explain = true`: the session's identity plus the explanation of
/// its claims under the current configuration, and the policy decision for
/// `?url=...&method=...` when given.
fn debug_explain(app: &App, req: &Request<Incoming>, session: &Session) -> Result<Response<Body>, Failure> {
    let request = match query::param(req, "url") {
        Some(url) => Some(
            crate::explain::request_info(&url, &query::param(req, "method").unwrap_or_else(|| "GET".into()))
                .map_err(Failure::BadExplainQuery)?,
        ),
        None => None,
    };
    let rules = app.rules.load_full();
    let explainer = crate::explain::Explainer {
        config: &rules.config,
        mapper: &rules.mapper,
        policy: &rules.policy,
        headers: &rules.headers,
    };
    let explanation = explainer.explain(&session.claims.read(), request.as_ref());
    let mut body = identity_json(&session.identity);
    body["explain"] = explanation.to_json(&rules.config);
    if session.claims_partial {
        body["claims_note"] = "this session kept no claims (it was made while debug_explain was off): sign in again to see its own".into();
    }
    if explanation.mapping.result.as_ref().ok() != Some(&session.identity) {
        body["note"] = "this session was mapped under an earlier configuration; verify uses the session's identity until the next sign-in or token refresh".into();
    }
    Ok(json(StatusCode::OK, &body))
}

fn identity_json(identity: &Identity) -> serde_json::Value {
    serde_json::json!({
        "user": identity.user(),
        "email": identity.email(),
        "name": identity.name(),
        "groups": identity.groups(),
        "roles": identity.roles(),
        "role": identity.role(),
        "subject": identity.subject(),
        "person": identity.person(),
    })
}

pub(super) async fn readyz(app: &App) -> Response<Body> {
    let mut problems = BTreeMap::new();
    if let Some(reason) = app.oidc.not_ready() {
        problems.insert("identity_provider", reason);
    }
    if let Err(e) = app.store.ping().await {
        problems.insert("session_store", e.to_string());
    }
    if problems.is_empty() {
        json(StatusCode::OK, &serde_json::json!({"ready": true}))
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"ready": false, "problems": problems}))
    }
}

pub(super) fn healthz() -> Response<Body> {
    text(StatusCode::OK, "ok\n")
}

pub(super) fn metrics() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(crate::metrics::get().render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
