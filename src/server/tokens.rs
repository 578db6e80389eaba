//! `/oauth2/tokens`: a signed-in person's personal access tokens (app
//! passwords) for apps and devices that cannot sign in with a browser.
//! The page lists them, makes one (shown once) and revokes any. Its forms
//! carry a token bound to the session (CSRF), and a post from another
//! origin is refused.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use super::respond::{self, Body, Failure, Step, TokenRow, redirect};
use super::session::Loaded;
use super::login::constant_time_eq;
use super::{App, query};
use crate::session::token::{self, TokenInfo};
use crate::session::{Index, Session, StoreKey, unix_now};

/// Most tokens one person may hold.
const MAX_TOKENS: usize = 50;
/// The expiries the page offers, and what each means.
const EXPIRIES: [(&str, Option<u64>); 4] =
    [("30d", Some(30 * 86400)), ("90d", Some(90 * 86400)), ("365d", Some(365 * 86400)), ("never", None)];

/// `GET /oauth2/tokens`.
pub(super) async fn page(app: &App, req: &Request<Incoming>) -> Response<Body> {
    match signed_in(app, req.headers()).await {
        Ok(loaded) => listing(app, req.headers(), &loaded, None, StatusCode::OK).await,
        Err(failure) => not_signed_in(app, req.headers(), failure),
    }
}

/// `POST /oauth2/tokens`: `action=create` (`name`, `expires`, `hosts`) or
/// `action=revoke` (`id`), each with the form's `csrf`.
pub(super) async fn post(app: &App, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let loaded = match signed_in(app, headers).await {
        Ok(loaded) => loaded,
        Err(failure) => return not_signed_in(app, headers, failure),
    };
    if !same_origin(app, headers) {
        return respond::failure(app, headers, Failure::bad_request("This form may only be sent from portcullis's own page."));
    }
    let fields = match query::form(app, body).await {
        Ok(f) => f,
        Err(why) => return respond::failure(app, headers, Failure::bad_request(why)),
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    if !constant_time_eq(field("csrf").as_bytes(), csrf(&loaded).as_bytes()) {
        return respond::failure(app, headers, Failure::bad_request("This form has expired. Open the tokens page again."));
    }
    let result = match field("action") {
        "create" => create(app, &loaded, field("name"), field("expires"), field("hosts")).await,
        "revoke" => revoke(app, &loaded, field("id")).await.map(|()| None),
        _ => Err(Failure::bad_request("Unknown action.")),
    };
    match result {
        // Shown once, on this answer only.
        Ok(Some(made)) => listing(app, headers, &loaded, Some(&made), StatusCode::CREATED).await,
        // Revoked: back to the list.
        Ok(None) => {
            let mut r = redirect(app.config.endpoint_url("/oauth2/tokens").as_str());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r
        }
        Err(failure) => respond::failure(app, headers, failure),
    }
}

async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Loaded, Failure> {
    match super::session::load(app, headers).await {
        Ok(Some(loaded)) => Ok(loaded),
        Ok(None) => Err(Failure::NotSignedIn),
        Err(_) => Err(Failure::Unavailable(Step::Tokens)),
    }
}

/// A signed-out browser goes to sign in and comes back here.
fn not_signed_in(app: &App, headers: &HeaderMap, failure: Failure) -> Response<Body> {
    if matches!(failure, Failure::NotSignedIn) && crate::request::wants_html(headers) {
        let mut start = app.config.endpoint_url("/oauth2/start");
        start.query_pairs_mut().append_pair("rd", app.config.endpoint_url("/oauth2/tokens").as_str());
        return redirect(start.as_str());
    }
    respond::failure(app, headers, failure)
}

/// Whether a post comes from portcullis's own origin (browsers send
/// `Origin` with every post; other clients may send none).
fn same_origin(app: &App, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("")) {
        None => true,
        Some(origin) => origin == app.config.public_url.origin().ascii_serialization(),
    }
}

/// The forms' CSRF token: derived from the session's secret ID, so only
/// a page served to this browser's session carries it.
fn csrf(loaded: &Loaded) -> String {
    let mut h = Sha256::new();
    h.update(b"portcullis /oauth2/tokens csrf\0");
    h.update(loaded.id.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The person's tokens, newest first.
async fn tokens_of(app: &App, session: &Session) -> Result<Vec<(StoreKey, Arc<Session>)>, Failure> {
    let subject = session.identity.subject();
    let found = app.store.find(&Index::Subject(subject.to_string())).await.map_err(|_| Failure::Unavailable(Step::Tokens))?;
    let mut tokens: Vec<_> = found.into_iter().filter(|(_, s)| s.is_token() && s.identity.subject() == subject).collect();
    tokens.sort_by_key(|(_, s)| std::cmp::Reverse(s.created_at));
    Ok(tokens)
}

/// A new token, made: its name and its text.
struct Made {
    name: String,
    text: String,
}

async fn create(app: &App, loaded: &Loaded, name: &str, expires: &str, hosts: &str) -> Result<Option<Made>, Failure> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > token::MAX_NAME || name.chars().any(char::is_control) {
        return Err(Failure::bad_request("Give the token a name of up to 64 characters, such as \"Immich on my phone\"."));
    }
    let Some((_, lifetime)) = EXPIRIES.iter().find(|(k, _)| *k == expires) else {
        return Err(Failure::bad_request("Choose when the token expires."));
    };
    let hosts: Vec<String> = hosts.split([',', ' ', '\n', '\r', '\t']).filter(|h| !h.is_empty()).map(str::to_ascii_lowercase).collect();
    if hosts.len() > token::MAX_HOSTS || hosts.iter().any(|h| !is_host(h)) {
        return Err(Failure::bad_request("Hosts are host names such as photos.example.com, separated by commas (at most 16)."));
    }
    let person = &loaded.session;
    if tokens_of(app, person).await?.len() >= MAX_TOKENS {
        return Err(Failure::bad_request("You have as many tokens as one person may hold; revoke one first."));
    }
    let now = unix_now();
    let ttl = lifetime.map_or(token::NEVER, std::time::Duration::from_secs);
    let (text, key) = token::generate();
    let record = Session {
        identity: person.identity.clone(),
        claims: person.claims.clone(),
        claims_partial: person.claims_partial,
        id_token: None,
        refresh_token: None,
        access_expires_at: None,
        sid: None,
        created_at: now,
        expires_at: now + ttl.as_secs(),
        last_seen: 0,
        refreshed_at: now,
        token: Some(Box::new(TokenInfo { name: name.to_string(), hosts, no_expiry: lifetime.is_none() })),
    };
    app.store.put(&key, Arc::new(record), ttl).await.map_err(|e| {
        tracing::error!(error = %e, "a personal access token could not be stored");
        Failure::Unavailable(Step::Tokens)
    })?;
    let identity = &person.identity;
    tracing::info!(event = "token_created", user = %identity.user(), person = %identity.person(), subject = %identity.subject(), token = %name, expires, "personal access token made");
    crate::metrics::get().tokens_created.inc();
    Ok(Some(Made { name: name.to_string(), text }))
}

async fn revoke(app: &App, loaded: &Loaded, id: &str) -> Result<(), Failure> {
    let unavailable = |_| Failure::Unavailable(Step::Tokens);
    let key = StoreKey::from_text(id).ok_or_else(|| Failure::bad_request("No such token."))?;
    let identity = &loaded.session.identity;
    let record = app.store.get_fresh(&key).await.map_err(unavailable)?;
    // Only one's own tokens, and never a session.
    let Some(record) = record.filter(|s| s.is_token() && s.identity.subject() == identity.subject()) else {
        return Err(Failure::bad_request("No such token."));
    };
    app.store.delete(&key).await.map_err(unavailable)?;
    let name = record.token.as_deref().map_or("", |t| t.name.as_str());
    tracing::info!(event = "token_revoked", user = %identity.user(), subject = %identity.subject(), token = %name, "personal access token revoked");
    Ok(())
}

async fn listing(app: &App, headers: &HeaderMap, loaded: &Loaded, made: Option<&Made>, status: StatusCode) -> Response<Body> {
    let tokens = match tokens_of(app, &loaded.session).await {
        Ok(t) => t,
        Err(failure) => return respond::failure(app, headers, failure),
    };
    let when = |secs: u64| {
        chrono::DateTime::from_timestamp(secs as i64, 0).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let rows: Vec<TokenRow> = tokens
        .iter()
        .map(|(key, s)| {
            let info = s.token.as_deref().expect("only tokens");
            TokenRow {
                id: key.text(),
                name: info.name.clone(),
                created: when(s.created_at),
                last_used: if s.last_seen == 0 { "never".into() } else { when(s.last_seen) },
                expires: if info.no_expiry { "never".into() } else { when(s.expires_at) },
                hosts: info.hosts.clone(),
            }
        })
        .collect();
    let made = made.map(|m| (m.name.as_str(), m.text.as_str()));
    respond::tokens(app, headers, status, loaded.session.identity.user(), &rows, &csrf(loaded), made)
}

fn is_host(h: &str) -> bool {
    h.len() <= 253
        && !h.starts_with(['.', '-'])
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}
