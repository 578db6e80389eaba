//! Sign-out: `/oauth2/logout` from the browser and `/oauth2/signed-out`
//! where the provider sends it back, and the provider's back-channel and
//! front-channel logout notifications (`/oauth2/backchannel-logout`,
//! `/oauth2/frontchannel-logout`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::respond::{self, Body, Failure, Step, json, page, redirect};
use super::session::Loaded;
use super::{App, cookies, query};
use crate::oidc::OidcError;
use crate::session::cookie::Purpose;
use crate::session::{Index, StoreError, StoreKey, unix_now};

/// Least time a logout token's `jti` is remembered against replay.
const JTI_MEMORY: Duration = Duration::from_secs(600);
/// How long the way back from the provider's logout stays valid.
const SIGNOUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a sign-out confirmation page's button works.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);

/// What a sign-out carries through the provider in the RP-Initiated Logout
/// `state`, sealed: where to return, how many sessions ended (signing out
/// everywhere), until when, and the hash of the nonce in this browser's
/// sign-out cookie.
#[derive(Serialize, Deserialize)]
struct SignOutState {
    rd: Option<String>,
    ended: Option<u64>,
    exp: u64,
    nonce_hash: String,
}

/// `/oauth2/logout` (`?rd=` where to go afterwards, `?everywhere=1` every
/// session of this person). Ends the session at once when the browser asks
/// it itself (see [`asked_by_our_site`]), or posts the token of the
/// confirmation page; anything else gets that page.
pub(super) async fn logout(app: &App, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let is_post = parts.method == Method::POST;
    let req = Request::from_parts(parts, ());
    let headers = req.headers();
    let rd = match query::param(&req, "rd") {
        Some(_) => match query::return_url(app, &req) {
            Ok(u) => Some(u),
            Err(reason) => return respond::failure(app, headers, Failure::BadRequest(reason)),
        },
        None => None,
    };
    let everywhere = query::param(&req, "everywhere").is_some_and(|v| v == "1" || v == "true");
    let loaded = match super::session::load(app, headers).await {
        Ok(l) => l,
        Err(_) => return respond::failure(app, headers, Failure::Unavailable(Step::Logout)),
    };
    let key = loaded.as_ref().map(|l| &l.key);
    let confirmed = is_post && form_token(app, body).await.is_some_and(|t| confirm_token_valid(app, &t, key));
    if !confirmed && !asked_by_our_site(headers) {
        return respond::confirm_logout(app, headers, &confirm_token(app, key), everywhere);
    }
    let clear = cookies::expire_session(app);
    let (id_token, ended) = match end_sessions(app, headers, loaded, everywhere).await {
        Ok(v) => v,
        Err(failure) => {
            let mut r = respond::failure(app, headers, failure);
            cookies::add(&mut r, &clear);
            return r;
        }
    };
    let ended = everywhere.then_some(ended);
    let nonce = random_token();
    let state = SignOutState {
        rd: rd.as_ref().map(|u| u.to_string()),
        ended,
        exp: unix_now() + SIGNOUT_TIMEOUT.as_secs(),
        nonce_hash: hash(&nonce),
    };
    let sealed = app.sealer.seal(Purpose::SignOut, &serde_json::to_vec(&state).expect("sign-out state serialises"));
    let mut response = match app.oidc.logout_url(id_token.as_deref(), &app.config.signed_out_url(), &sealed) {
        Some(url) => {
            let mut r = redirect(url.as_str());
            cookies::add(&mut r, &cookies::signout_start(app, &nonce, SIGNOUT_TIMEOUT));
            r
        }
        // The provider has no logout of its own: straight on.
        None => match rd {
            Some(rd) => redirect(rd.as_str()),
            None => respond::signed_out(app, headers, ended, app.config.endpoint_url("/oauth2/start").as_str()),
        },
    };
    cookies::add(&mut response, &clear);
    for expired in cookies::expire_logout_hint(app) {
        cookies::add(&mut response, &expired);
    }
    response
}

/// Whether the browser itself asks to sign out: a top-level navigation
/// from our own site, a typed or bookmarked address (`Sec-Fetch-Dest:
/// document` with `Sec-Fetch-Site` `same-origin`, `same-site` or `none`),
/// or a client that sends no `Sec-Fetch-*` headers at all (scripts, older
/// browsers). An image, a frame or a navigation from another site is not.
fn asked_by_our_site(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    let any_fetch_metadata = headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
    if !any_fetch_metadata {
        return true;
    }
    get("sec-fetch-dest").as_deref() == Some("document")
        && matches!(get("sec-fetch-site").as_deref(), Some("same-origin" | "same-site" | "none"))
}

/// The `token` field of a posted form, if the body can be read.
async fn form_token(app: &App, body: Incoming) -> Option<String> {
    query::form(app, body).await.ok()?.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v)
}

/// A confirmation token for the session filed under `key` (or for no
/// session): sealed, so only portcullis makes them, and short-lived.
fn confirm_token(app: &App, key: Option<&StoreKey>) -> String {
    let mut payload = (unix_now() + CONFIRM_TIMEOUT.as_secs()).to_be_bytes().to_vec();
    if let Some(key) = key {
        payload.extend_from_slice(key.as_bytes());
    }
    app.sealer.seal(Purpose::LogoutConfirm, &payload)
}

fn confirm_token_valid(app: &App, token: &str, key: Option<&StoreKey>) -> bool {
    let Some(opened) = app.sealer.open(Purpose::LogoutConfirm, token) else { return false };
    let Some((exp, bound)) = opened.payload.split_at_checked(8) else { return false };
    let exp = u64::from_be_bytes(exp.try_into().expect("8 bytes"));
    let bound_to: &[u8] = key.map(|k| &k.as_bytes()[..]).unwrap_or_default();
    exp >= unix_now() && bound == bound_to
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Deletes the request's session (with `everywhere`, every session of its
/// subject), and gives the ID token to hint the provider's logout with and
/// how many sessions ended.
async fn end_sessions(
    app: &App,
    headers: &HeaderMap,
    loaded: Option<Loaded>,
    everywhere: bool,
) -> Result<(Option<String>, u64), Failure> {
    let Some(Loaded { key, session, .. }) = loaded else {
        return Ok((None, 0));
    };
    let unavailable = |e: StoreError| {
        tracing::error!(error = %e, "session could not be deleted at logout");
        Failure::Unavailable(Step::Logout)
    };
    app.store.delete(&key).await.map_err(unavailable)?;
    crate::session::ended::logout(&session.identity);
    let mut ended = 1;
    if everywhere {
        let subject = session.identity.subject().to_string();
        for (other, s) in app.store.find(&Index::Subject(subject.clone())).await.map_err(unavailable)? {
            // Personal access tokens outlive a sign-out: they are revoked on
            // /oauth2/tokens or with `portcullis tokens revoke`.
            if other == key || s.identity.subject() != subject || s.is_token() {
                continue;
            }
            app.store.delete(&other).await.map_err(unavailable)?;
            crate::session::ended::logout(&s.identity);
            ended += 1;
        }
        tracing::info!(event = "logout_everywhere", subject = %subject, sessions_ended = ended, "signed out everywhere");
    }
    let id_token = session.id_token.as_deref().map(str::to_string).or_else(|| cookies::logout_hint(app, headers, &key));
    Ok((id_token, ended))
}

/// `/oauth2/signed-out`, the post-logout redirect URI: where the provider
/// sends the browser back. A `state` that opens, in time, in the browser
/// that signed out, leads on to its `rd`; otherwise (or without `rd`) the
/// signed-out page.
pub(super) async fn signed_out(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let nonces = cookies::signout_nonces(app, headers);
    let state = query::param(req, "state").filter(|s| !s.is_empty());
    let opened = state.as_deref().and_then(|s| open_state(app, s, &nonces));
    if state.is_some() && opened.is_none() {
        tracing::info!(event = "signout_state_refused", "sign-out state unknown, expired or from another browser: showing the signed-out page");
    }
    let sign_in = app.config.endpoint_url("/oauth2/start");
    // Spent once it leads somewhere; a stray or tampered state leaves it.
    let spent = opened.is_some();
    let mut response = match opened {
        Some(SignOutState { rd: Some(rd), .. }) => redirect(&rd),
        Some(SignOutState { ended, .. }) => respond::signed_out(app, headers, ended, sign_in.as_str()),
        None => match super::session::load(app, headers).await {
            Ok(Some(loaded)) => {
                let tokens = app.config.api.personal_tokens.then(|| app.config.endpoint_url("/oauth2/tokens"));
                respond::signed_in(
                    app,
                    headers,
                    loaded.session.identity.user(),
                    app.config.endpoint_url("/oauth2/logout").as_str(),
                    tokens.as_ref().map(url::Url::as_str),
                )
            }
            _ => respond::signed_out(app, headers, None, sign_in.as_str()),
        },
    };
    if spent {
        cookies::add(&mut response, &cookies::expire_signout(app));
    }
    response
}

fn open_state(app: &App, state: &str, nonces: &[String]) -> Option<SignOutState> {
    let opened = app.sealer.open(Purpose::SignOut, state)?;
    let state: SignOutState = serde_json::from_slice(&opened.payload).ok()?;
    let ours = nonces.iter().any(|n| hash(n) == state.nonce_hash);
    (ours && state.exp >= unix_now()).then_some(state)
}

/// OpenID Connect Front-Channel Logout: the provider loads this in a
/// hidden frame with its `iss` and the session's `sid`. Ends the sessions
/// with that `sid` when `iss` is our provider; nothing otherwise. Only the
/// provider may frame the answer.
pub(super) async fn frontchannel(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let iss = query::param(req, "iss").unwrap_or_default();
    let sid = query::param(req, "sid").unwrap_or_default();
    let mut response = if iss.is_empty() || sid.is_empty() {
        respond::failure(app, headers, Failure::bad_request("Front-channel logout needs iss and sid."))
    } else if iss != app.oidc.issuer() {
        tracing::info!(event = "frontchannel_logout_refused", reason = "iss is not the configured issuer", "front-channel logout refused");
        respond::failure(app, headers, Failure::bad_request("iss is not this service's identity provider."))
    } else {
        match end_by_sid(app, &sid).await {
            Ok(ended) => {
                let mut r = page(app, headers, StatusCode::OK, "Signed out", "The identity provider ended this session.");
                if !crate::request::wants_html(headers) {
                    r = json(StatusCode::OK, &serde_json::json!({"sessions_ended": ended}));
                }
                r
            }
            Err(_) => respond::failure(app, headers, Failure::Unavailable(Step::Logout)),
        }
    };
    let origin = url::Url::parse(app.oidc.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    // The page's own policy, if it is a page, with the provider as the one
    // site that may frame it.
    let policy = match response.headers().get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()) {
        Some(p) => p.replace("frame-ancestors 'none'", &format!("frame-ancestors {origin}")),
        None => format!("frame-ancestors {origin}"),
    };
    if let Ok(csp) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

async fn end_by_sid(app: &App, sid: &str) -> Result<u64, StoreError> {
    let mut ended = 0;
    for (key, session) in app.store.find(&Index::Sid(sid.to_string())).await? {
        app.store.delete(&key).await?;
        crate::session::ended::frontchannel(&session.identity);
        ended += 1;
    }
    Ok(ended)
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
    notified(app, body).await.unwrap_or_else(|failure| respond::failure(app, &parts.headers, failure))
}

/// The sessions a logout token in `body` ends, and how many they were.
async fn notified(app: &App, body: Incoming) -> Result<Response<Body>, Failure> {
    let refused = |reason: &str| {
        tracing::info!(event = "backchannel_logout_refused", reason, "back-channel logout refused");
        Failure::LogoutTokenRefused(reason.to_string())
    };
    let unavailable = || Failure::Unavailable(Step::Backchannel);
    let fields = query::form(app, body).await.map_err(refused)?;
    let Some(token) = fields.into_iter().find(|(k, _)| k == "logout_token").map(|(_, v)| v) else {
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
            if claims.sub.as_ref().is_some_and(|sub| *sub != session.identity.subject()) || session.is_token() {
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
