//! The credential step of a verify: a request that carries a credential
//! (`[api]`: a provider token or a personal access token) is someone
//! without a session cookie. What it yields goes on through the same
//! policy and headers as a session.
//!
//! Per request this costs a header read and, for a provider token, one
//! cache lookup by hash; for a personal token, one session store read
//! (the cached layer, as for sessions, so a revocation reaches every
//! instance within `session.cache_ttl`). A refusal is counted against the
//! client's address (`api.max_failures_per_minute`) and audit-logged as
//! `event=token_refused`, never with the credential itself.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;

use super::respond::{Failure, Step};
use super::{App, Rules};
use crate::claims::StoredClaims;
use crate::credentials::{Carrier, Credential, Presented, Verified};
use crate::identity::Identity;
use crate::oidc::BearerError;
use crate::request::client_ip;
use crate::session::{Session, token, unix_now};

/// "Last used" of a personal token is written at most this often.
const TOUCH_INTERVAL: u64 = 300;

/// Who a credential says the request is from.
pub(super) enum Holder {
    /// A personal access token's record.
    Token(Arc<Session>),
    /// A provider token that verified.
    Bearer(Arc<Verified>),
}

impl Holder {
    pub(super) fn identity(&self) -> &Identity {
        match self {
            Holder::Token(s) => &s.identity,
            Holder::Bearer(v) => &v.identity,
        }
    }

    pub(super) fn claims(&self) -> &StoredClaims {
        match self {
            Holder::Token(s) => &s.claims,
            Holder::Bearer(v) => &v.claims,
        }
    }
}

/// Why a credential is refused: a short reason for metrics and the log,
/// and what to log beside it.
struct Refused {
    reason: &'static str,
    detail: String,
}

fn refused(reason: &'static str, detail: impl Into<String>) -> Refused {
    Refused { reason, detail: detail.into() }
}

/// The credential the request carries, checked: `None` when it carries
/// none for portcullis (another issuer's token, the app's own Basic
/// login); a [`Failure`] when it is refused.
pub(super) async fn check(
    app: &App,
    rules: &Rules,
    req: &Request<Incoming>,
    presented: &Presented<'_>,
    peer: SocketAddr,
    host: &str,
) -> Result<Option<(Holder, Carrier)>, Failure> {
    let Some(found) = crate::credentials::find(presented, &app.config.api) else {
        return Ok(None);
    };
    if let Credential::Provider(jwt) = found.credential {
        // The usual case, a token seen before: no digest, no copy.
        if let Some(verified) = app.bearer.get(jwt) {
            return Ok(Some((Holder::Bearer(verified), found.carrier)));
        }
    }
    let Some(found) = crate::credentials::not_a_jwt(found) else {
        return Ok(None);
    };
    if let Credential::Provider(jwt) = found.credential {
        if !crate::credentials::names_issuer(jwt, app.oidc.issuer()) {
            // Some other issuer's token, meant for the app.
            return Ok(None);
        }
    }
    let hash = found.hash();
    let client = client_ip(req.headers(), peer);
    let at = Who { client: Some(&client), host: Some(host), ..Who::default() };
    if let Some(wait) = app.failures.blocked(&client) {
        audit(found.kind(), "rate_limited", &at, "too many refused from this address");
        return Err(Failure::TooManyFailures(wait));
    }
    if app.failures.just_refused(&client, &hash) {
        // Refused a moment ago (NGINX asks again for the answer to give).
        return Err(Failure::CredentialRefused);
    }
    let checked = match &found.credential {
        Credential::Personal(text) => personal(app, rules, text, hash, host).await,
        Credential::Provider(jwt) => bearer(app, rules, jwt).await,
    };
    match checked {
        Ok(Ok(holder)) => Ok(Some((holder, found.carrier))),
        Ok(Err(refusal)) => {
            app.failures.refused(&client, &hash);
            audit(found.kind(), refusal.reason, &at, &refusal.detail);
            Err(Failure::CredentialRefused)
        }
        Err(failure) => Err(failure),
    }
}

/// Who and where a refused credential was presented, as far as known
/// (what is not known is left out of the log line).
#[derive(Default)]
struct Who<'a> {
    client: Option<&'a str>,
    host: Option<&'a str>,
    user: Option<&'a str>,
    subject: Option<&'a str>,
    /// A personal token's name (never the token).
    token: Option<&'a str>,
}

/// Every refused credential is counted and audit-logged here, once:
/// `event=token_refused`, its kind and reason, never the credential.
fn audit(kind: &'static str, reason: &'static str, who: &Who<'_>, detail: &str) {
    crate::metrics::get().credential_refused(kind, reason);
    tracing::info!(
        event = "token_refused",
        kind,
        reason,
        client_ip = who.client,
        host = who.host,
        user = who.user,
        subject = who.subject,
        token = who.token,
        "credential refused: {detail}"
    );
}

/// A personal access token: its record (one store read), still good for
/// this host and for the current rules.
async fn personal(app: &App, rules: &Rules, text: &str, hash: [u8; 32], host: &str) -> Result<Result<Holder, Refused>, Failure> {
    if !app.config.api.personal_tokens {
        return Ok(Err(refused("invalid", "personal access tokens are off (api.personal_tokens = false)")));
    }
    let Some(key) = token::key(text, hash) else {
        return Ok(Err(refused("invalid", "it is not a personal access token")));
    };
    let record = app.store.get(&key).await.map_err(|_| Failure::Unavailable(Step::Verify))?;
    let Some(session) = record.filter(|s| s.is_token() && s.remaining().is_some()) else {
        return Ok(Err(refused("revoked", "unknown, revoked or expired personal access token")));
    };
    let info = session.token.as_deref().expect("a token record");
    let identity = &session.identity;
    let deny = |reason: &'static str, detail: String| {
        let who = Who { host: Some(host), user: Some(identity.user()), subject: Some(identity.subject()), token: Some(&info.name), ..Who::default() };
        audit("personal", reason, &who, &detail);
        Failure::Denied
    };
    if !info.good_for(host) {
        return Err(deny("host", format!("the token is good for {} only", info.hosts.join(", "))));
    }
    if let Err(refusal) = rules.mapper.admits(identity) {
        return Err(deny("identity", refusal.reason));
    }
    if session.claims_partial && rules.policy.reads_claims() {
        return Err(deny("identity", "the token was made before the policy read claims; make a new one".into()));
    }
    touch(app, key, &session);
    Ok(Ok(Holder::Token(session)))
}

/// Writes "last used", off the request's path, at most every few minutes.
fn touch(app: &App, key: crate::session::StoreKey, session: &Arc<Session>) {
    let now = unix_now();
    if now.saturating_sub(session.last_seen) < TOUCH_INTERVAL {
        return;
    }
    let mut touched = (**session).clone();
    touched.last_seen = now;
    if let Some(ttl) = touched.remaining() {
        let store = Arc::clone(&app.store);
        tokio::spawn(async move {
            let _ = store.update(&key, Arc::new(touched), ttl).await;
        });
    }
}

/// A provider token not seen before: verified against the provider's
/// keys, its claims mapped as a sign-in's are, then cached until it expires.
async fn bearer(app: &App, rules: &Rules, jwt: &str) -> Result<Result<Holder, Refused>, Failure> {
    let api = &app.config.api;
    let claims = match app.oidc.verify_bearer(jwt, &api.audiences, &api.required_scopes).await {
        Ok(claims) => claims,
        Err(BearerError::Invalid(reason, detail)) => return Ok(Err(refused(reason, detail))),
        Err(BearerError::Scope(detail)) => {
            audit("bearer", "scope", &Who::default(), &detail);
            return Err(Failure::InsufficientScope);
        }
        Err(BearerError::Unavailable(e)) => {
            tracing::warn!(error = %e, "a provider token cannot be checked: the provider's keys are not available");
            return Err(Failure::Unavailable(Step::Verify));
        }
    };
    let expires_at = claims.get("exp").and_then(|v| v.as_f64()).map_or(0, |e| e as u64);
    let good_until = expires_at.min(unix_now() + crate::credentials::BEARER_CACHE_TTL);
    let (claims, identity) = rules.mapper.derive(&app.graph, &claims, None, None, None).await;
    let identity = match identity {
        Ok(i) => crate::session::capped(i),
        Err(refusal) => {
            // A valid token of someone the identity rules refuse: as a
            // refused sign-in, 403.
            let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
            audit("bearer", "identity", &Who { subject: Some(sub), ..Who::default() }, &refusal.to_string());
            return Err(Failure::Denied);
        }
    };
    let verified = Arc::new(Verified { identity, claims: StoredClaims::keep(&claims, rules.keep_claims), good_until });
    app.bearer.insert(jwt, Arc::clone(&verified));
    Ok(Ok(Holder::Bearer(verified)))
}
