//! Sign-in: `/oauth2/start` sends the browser to the provider with a login
//! attempt sealed in a cookie; `/oauth2/callback` spends that attempt,
//! exchanges the code, maps the identity and opens the session.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use super::respond::{self, Body, Failure, Step, redirect};
use super::{App, cookies, query};
use crate::claims::StoredClaims;
use crate::oidc::{LOGIN_TIMEOUT, LoginAttempt, OidcError};
use crate::request::client_ip;
use crate::session::{Session, SessionId, unix_now};

pub(super) fn start(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, Failure> {
    let rd = query::return_url(app, req).map_err(Failure::BadRequest)?;
    let (auth_url, attempt) = app.oidc.begin(&rd).map_err(|e| {
        tracing::warn!(error = %e, "login cannot start");
        Failure::Unavailable(Step::Start)
    })?;
    let mut response = redirect(auth_url.as_str());
    for cookie in cookies::login_start(app, req.headers(), &attempt) {
        cookies::add(&mut response, &cookie);
    }
    Ok(response)
}

pub(super) async fn callback(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let client_ip = client_ip(req.headers(), peer);
    let state = query::param(req, "state").unwrap_or_default();
    // The login attempt this browser started with this state, if any. Only
    // then is its cookie spent: a stray callback must not cancel a login
    // in progress.
    let cookie_name = (!state.is_empty()).then(|| cookies::login_name(app, &state));
    let attempt = cookie_name
        .as_deref()
        .and_then(|name| cookies::login_attempt(app, req.headers(), name))
        .filter(|a| constant_time_eq(a.state.as_bytes(), state.as_bytes()));
    let mut response = finish(app, req, attempt.as_ref(), &client_ip)
        .await
        .unwrap_or_else(|failure| respond::failure(app, req.headers(), failure));
    if let (Some(name), Some(_)) = (cookie_name, attempt) {
        cookies::add(&mut response, &cookies::expire_login(app, &name));
    }
    response
}

async fn finish(
    app: &App,
    req: &Request<Incoming>,
    attempt: Option<&LoginAttempt>,
    client_ip: &str,
) -> Result<Response<Body>, Failure> {
    if let Some(error) = query::param(req, "error") {
        let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        tracing::info!(event = "login_refused", reason = %format!("provider answered error={error}"), client_ip, "login refused by the identity provider");
        crate::metrics::get().login("refused", "provider_error");
        return Err(Failure::ProviderRefused(error));
    }
    let Some(attempt) = attempt.filter(|a| unix_now().saturating_sub(a.created_at) <= LOGIN_TIMEOUT.as_secs()) else {
        tracing::info!(event = "login_refused", reason = "unknown, expired or replayed state", client_ip, "login refused");
        crate::metrics::get().login("refused", "state");
        return Err(Failure::AttemptExpired);
    };
    let Some(code) = query::param(req, "code").filter(|c| !c.is_empty()) else {
        return Err(Failure::bad_request("The identity provider sent no authorization code."));
    };
    // The attempt lives in the browser's cookie, which can be sent again:
    // spend its state in the store first, so each attempt reaches the
    // provider's token endpoint once at most.
    match app.store.claim(&format!("login:{}", attempt.state), LOGIN_TIMEOUT).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(event = "login_refused", reason = "replayed state", client_ip, "login refused");
            crate::metrics::get().login("refused", "state");
            return Err(Failure::AttemptReplayed);
        }
        Err(e) => {
            tracing::error!(event = "login_failed", reason = %e, client_ip, "the login attempt could not be recorded");
            crate::metrics::get().login("failed", "store");
            return Err(Failure::Unavailable(Step::SpendAttempt));
        }
    }
    let result = app.oidc.finish(&code, attempt).await.map_err(|e| {
        tracing::warn!(event = "login_failed", reason = %e, client_ip, "login failed");
        crate::metrics::get().login("failed", match &e {
            OidcError::NotReady(_) | OidcError::Unreachable(_) => "provider_unreachable",
            OidcError::Refused(_) => "provider_refused",
            OidcError::Invalid(_) => "invalid_answer",
        });
        Failure::Login(e)
    })?;
    let rules = app.rules.load_full();
    let (claims, identity) = rules
        .mapper
        .derive(&app.graph, &result.id_claims, result.userinfo_claims.as_ref(), result.access_claims.as_ref(), Some(&result.access_token))
        .await;
    let identity = match identity {
        Ok(i) => crate::session::capped(i),
        Err(refusal) => {
            let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
            tracing::info!(event = "login_refused", subject = %sub, reason = %refusal, client_ip, "login refused");
            crate::metrics::get().login("refused", "identity");
            return Err(Failure::IdentityRefused(refusal.reason));
        }
    };
    let now = unix_now();
    let ttl = app.config.session.ttl;
    let id = SessionId::generate();
    let key = id.store_key();
    // The ID token is only needed at logout: the browser keeps it in a
    // sealed cookie sent only to the logout endpoint, so the store does not
    // hold it for the whole session. Too large for a few cookies, it is
    // stored.
    let hint = cookies::logout_hint_cookies(app, &key, &result.id_token);
    let session = Session {
        sid: claims.get("sid").and_then(|v| v.as_str()).map(Into::into),
        claims: StoredClaims::keep(&claims, rules.keep_claims),
        claims_partial: !rules.keep_claims,
        id_token: if hint.is_some() { None } else { Some(result.id_token.into()) },
        refresh_token: result.refresh_token.map(Into::into),
        access_expires_at: result.expires_in.map(|d| now + d.as_secs()),
        created_at: now,
        expires_at: now + ttl.as_secs(),
        last_seen: now,
        refreshed_at: now,
        token: None,
        identity,
    };
    let session = Arc::new(session);
    if let Err(e) = app.store.put(&key, session.clone(), ttl).await {
        tracing::error!(event = "login_failed", reason = %e, client_ip, "session could not be stored");
        crate::metrics::get().login("failed", "store");
        return Err(Failure::Unavailable(Step::SaveSession));
    }
    let identity = &session.identity;
    tracing::info!(
        event = "login",
        user = %identity.user(),
        person = %identity.person(),
        subject = %identity.subject(),
        client_ip,
        "login succeeded"
    );
    crate::metrics::get().login("success", "none");
    crate::metrics::get().sessions_created.inc();
    // One person holds at most max_sessions_per_user sessions (0: any
    // number, and nobody counts them).
    let max = app.config.session.max_sessions_per_user as usize;
    if max > 0 {
        match crate::session::end_oldest_beyond(&*app.store, identity.subject(), &key, max).await {
            Ok(ended) => ended.iter().for_each(|s| crate::session::ended::too_many(&s.identity)),
            Err(e) => tracing::warn!(error = %e, subject = %identity.subject(), "older sessions of this person could not be counted"),
        }
    }
    let mut response = redirect(&attempt.rd);
    cookies::add(&mut response, &cookies::session(app, &id));
    for hint in hint.iter().flatten() {
        cookies::add(&mut response, hint);
    }
    Ok(response)
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
