//! Sign-out: `/oauth2/logout` from the browser, and the provider's
//! back-channel logout notifications (`/oauth2/backchannel-logout`).

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::respond::{self, Body, Failure, Step, json, page, redirect};
use super::session::Loaded;
use super::{App, cookies, query};
use crate::oidc::OidcError;
use crate::session::{Index, StoreError};

/// Largest request body read (back-channel logout).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Least time a logout token's `jti` is remembered against replay.
const JTI_MEMORY: Duration = Duration::from_secs(600);

pub(super) async fn logout(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let rd = match query::param(req, "rd") {
        Some(_) => match query::return_url(app, req) {
            Ok(u) => Some(u),
            Err(reason) => return respond::failure(req.headers(), Failure::BadRequest(reason)),
        },
        None => None,
    };
    let clear = cookies::expire_session(app);
    let id_token = match end_session(app, req).await {
        Ok(id_token) => id_token,
        Err(failure) => {
            let mut r = respond::failure(req.headers(), failure);
            cookies::add(&mut r, &clear);
            return r;
        }
    };
    let post_logout = rd.clone().unwrap_or_else(|| app.config.endpoint_url("/"));
    let mut response = match app.oidc.logout_url(id_token.as_deref(), &post_logout) {
        Some(url) => redirect(url.as_str()),
        None => match rd {
            Some(rd) => redirect(rd.as_str()),
            None => page(req.headers(), StatusCode::OK, "Signed out", "You are signed out."),
        },
    };
    cookies::add(&mut response, &clear);
    cookies::add(&mut response, &cookies::expire_logout_hint(app));
    response
}

/// Deletes the request's session, if any, and gives the ID token to hint
/// the provider's logout with.
async fn end_session(app: &App, req: &Request<Incoming>) -> Result<Option<String>, Failure> {
    let loaded = super::session::load(app, req.headers()).await.map_err(|_| Failure::Unavailable(Step::Logout))?;
    let Some(Loaded { key, session, .. }) = loaded else {
        return Ok(None);
    };
    if let Err(e) = app.store.delete(&key).await {
        tracing::error!(error = %e, "session could not be deleted at logout");
        return Err(Failure::Unavailable(Step::Logout));
    }
    crate::session::ended::logout(&session.identity);
    Ok(session.id_token.as_deref().map(str::to_string).or_else(|| cookies::logout_hint(app, req.headers(), &key)))
}

/// How long a logout token's `jti` is remembered: as long as a token
/// carrying it can be accepted. Its `iat` may be up to `leeway` ahead, and
/// it is accepted until `iat` is `LOGOUT_TOKEN_MAX_AGE` plus `leeway` behind.
fn jti_memory(leeway: Duration) -> Duration {
    JTI_MEMORY.max(crate::oidc::LOGOUT_TOKEN_MAX_AGE + leeway * 2)
}

/// OpenID Connect Back-Channel Logout: the provider ends sessions by `sid`
/// or `sub`. 200 when the token is valid (even if no session matched), 400
/// otherwise; nothing is revoked on a 400.
pub(super) async fn backchannel(app: &App, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    notified(app, body).await.unwrap_or_else(|failure| respond::failure(&parts.headers, failure))
}

/// The sessions a logout token in `body` ends, and how many they were.
async fn notified(app: &App, body: Incoming) -> Result<Response<Body>, Failure> {
    use http_body_util::{BodyExt as _, Limited};
    let refused = |reason: &str| {
        tracing::info!(event = "backchannel_logout_refused", reason, "back-channel logout refused");
        Failure::LogoutTokenRefused(reason.to_string())
    };
    let unavailable = || Failure::Unavailable(Step::Backchannel);
    // A body that trickles in for longer than header_timeout is refused too.
    let read = tokio::time::timeout(app.config.header_timeout, Limited::new(body, MAX_REQUEST_BODY).collect());
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Err(refused("the request body is unreadable or too large")),
        Err(_) => return Err(refused("the request body did not arrive within header_timeout")),
    };
    let Some(token) = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned())
    else {
        return Err(refused("no logout_token"));
    };
    let claims = match app.oidc.verify_logout_token(&token).await {
        Ok(c) => c,
        Err(OidcError::NotReady(_)) | Err(OidcError::Unreachable(_)) => return Err(unavailable()),
        Err(e) => return Err(refused(&e.to_string())),
    };
    match app.store.claim(&format!("jti:{}", claims.jti), jti_memory(app.config.oidc.leeway)).await {
        Ok(true) => {}
        Ok(false) => return Err(refused("the logout token was already used (jti replayed)")),
        Err(_) => return Err(unavailable()),
    }
    let index = match (&claims.sid, &claims.sub) {
        (Some(sid), _) => Index::Sid(sid.clone()),
        (None, Some(sub)) => Index::Subject(sub.clone()),
        (None, None) => unreachable!("verify_logout_token requires sub or sid"),
    };
    let result = async {
        let mut ended = 0;
        for (key, session) in app.store.find(&index).await? {
            // With both sid and sub, both must match.
            if claims.sub.as_ref().is_some_and(|sub| *sub != session.identity.subject()) {
                continue;
            }
            app.store.delete(&key).await?;
            ended += 1;
            crate::session::ended::backchannel(&session.identity);
        }
        Ok::<_, StoreError>(ended)
    }
    .await;
    match result {
        Ok(ended) => Ok(json(StatusCode::OK, &serde_json::json!({"sessions_ended": ended}))),
        Err(_) => {
            // Let the provider retry: forget the jti.
            let _ = app.store.release(&format!("jti:{}", claims.jti)).await;
            Err(unavailable())
        }
    }
}
