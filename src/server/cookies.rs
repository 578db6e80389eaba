//! Every cookie portcullis sets: the session cookie, the logout hint, the
//! login attempts and the sign-out nonce; their names, paths and attributes. Sealing their
//! values is [`crate::session::cookie`]'s.

use hyper::Response;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::App;
use super::respond::Body;
use crate::oidc::{LOGIN_TIMEOUT, LoginAttempt};
use crate::request::{cookie_pairs, cookies};
use crate::session::cookie::Purpose;
use crate::session::{SessionId, StoreKey};

/// Login cookies kept at once per browser (one per open login tab).
const MAX_LOGIN_COOKIES: usize = 4;
/// Largest sealed logout hint put in one cookie; browsers keep cookies of
/// up to 4096 bytes, name and attributes included.
const MAX_HINT_COOKIE: usize = 3800;
/// Most cookies one logout hint is split over (as oauth2-proxy splits its
/// large sessions): an ID token of up to 5,400 bytes (about a hundred
/// groups), while the `Cookie` header the logout request carries stays
/// within the 8 KB a proxy takes by default. A larger one is kept with the
/// session in the store.
const MAX_HINT_CHUNKS: usize = 2;
/// ID token bytes per hint cookie: with the key it is bound to, its place,
/// and the sealing's version, nonce and tag, the sealed value stays within
/// [`MAX_HINT_COOKIE`].
const HINT_PIECE: usize = 2700;

/// The session cookie naming session `id`, sealed with the current key.
pub(super) fn session(app: &App, id: &SessionId) -> String {
    let s = &app.config.session;
    let sealed = app.sealer.seal(Purpose::Session, id.as_bytes());
    set_cookie(&s.cookie_name, &sealed, "/", s.cookie_domain.as_deref(), s.cookie_secure, Some(s.ttl.as_secs()))
}

/// Clears the session cookie.
pub(super) fn expire_session(app: &App) -> String {
    let s = &app.config.session;
    expire_cookie(&s.cookie_name, "/", s.cookie_domain.as_deref(), s.cookie_secure)
}

/// The start of the names of cookies scoped to a path (login attempts, the
/// logout hint): the session cookie's name, but `__Secure-` for
/// `__Host-`, whose cookies must have `Path=/`.
fn scoped_cookie_base(app: &App) -> String {
    let name = &app.config.session.cookie_name;
    match name.strip_prefix("__Host-") {
        Some(rest) => format!("__Secure-{rest}"),
        None => name.clone(),
    }
}

/// The name of the logout hint's cookie number `i` (the first has none).
fn logout_hint_name(app: &App, i: usize) -> String {
    match i {
        0 => format!("{}_logout", scoped_cookie_base(app)),
        i => format!("{}_logout_{i}", scoped_cookie_base(app)),
    }
}

fn logout_hint_path(app: &App) -> String {
    app.config.endpoint_url("/oauth2/logout").path().to_string()
}

/// The `Set-Cookie` values carrying `id_token` for the logout of the
/// session filed under `key` (one cookie, or two for a large token), or
/// `None` when it would take more than [`MAX_HINT_CHUNKS`]. Each sealed
/// piece is bound to that key and to its place, so a hint from another
/// session, or pieces of two hints, are never sent.
pub(super) fn logout_hint_cookies(app: &App, key: &StoreKey, id_token: &str) -> Option<Vec<String>> {
    let pieces: Vec<&[u8]> = id_token.as_bytes().chunks(HINT_PIECE).collect();
    if pieces.is_empty() || pieces.len() > MAX_HINT_CHUNKS {
        return None;
    }
    let s = &app.config.session;
    let count = pieces.len() as u8;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut payload = Vec::with_capacity(34 + piece.len());
            payload.extend_from_slice(key.as_bytes());
            payload.extend_from_slice(&[i as u8, count]);
            payload.extend_from_slice(piece);
            let sealed = app.sealer.seal(Purpose::LogoutHint, &payload);
            (sealed.len() <= MAX_HINT_COOKIE).then(|| {
                let name = logout_hint_name(app, i);
                set_cookie(&name, &sealed, &logout_hint_path(app), s.cookie_domain.as_deref(), s.cookie_secure, Some(s.ttl.as_secs()))
            })
        })
        .collect()
}

/// The ID token the logout hint cookies hold for the session filed under
/// `key`: every piece present, opened, bound to `key` and in its place.
pub(super) fn logout_hint(app: &App, headers: &HeaderMap, key: &StoreKey) -> Option<String> {
    let piece = |i: usize| {
        cookies(headers, &logout_hint_name(app, i)).find_map(|value| {
            let opened = app.sealer.open(Purpose::LogoutHint, value)?;
            let (bound, rest) = opened.payload.split_at_checked(32)?;
            let (&[index, count], piece) = rest.split_at_checked(2)? else { return None };
            (bound == key.as_bytes() && usize::from(index) == i && count > 0).then(|| (count, piece.to_vec()))
        })
    };
    let (count, mut token) = piece(0)?;
    if usize::from(count) > MAX_HINT_CHUNKS {
        return None;
    }
    for i in 1..usize::from(count) {
        let (c, more) = piece(i)?;
        if c != count {
            return None;
        }
        token.extend_from_slice(&more);
    }
    String::from_utf8(token).ok()
}

/// Clears the logout hint: each of its cookies.
pub(super) fn expire_logout_hint(app: &App) -> Vec<String> {
    let s = &app.config.session;
    (0..MAX_HINT_CHUNKS)
        .map(|i| expire_cookie(&logout_hint_name(app, i), &logout_hint_path(app), s.cookie_domain.as_deref(), s.cookie_secure))
        .collect()
}

fn signout_name(app: &App) -> String {
    format!("{}_signout", scoped_cookie_base(app))
}

fn signout_path(app: &App) -> String {
    app.config.endpoint_url("/oauth2/signed-out").path().to_string()
}

/// The cookie binding a sign-out's `state` to this browser: a random
/// `nonce` (the state holds its hash), sent back only to `/oauth2/signed-out`.
pub(super) fn signout_start(app: &App, nonce: &str, max_age: std::time::Duration) -> String {
    set_cookie(&signout_name(app), nonce, &signout_path(app), None, app.config.session.cookie_secure, Some(max_age.as_secs()))
}

/// The sign-out nonces this browser holds (normally one).
pub(super) fn signout_nonces(app: &App, headers: &HeaderMap) -> Vec<String> {
    let name = signout_name(app);
    cookies(headers, &name).map(str::to_string).collect()
}

/// Clears the sign-out nonce.
pub(super) fn expire_signout(app: &App) -> String {
    expire_cookie(&signout_name(app), &signout_path(app), None, app.config.session.cookie_secure)
}

fn login_cookie_prefix(app: &App) -> String {
    format!("{}_login_", scoped_cookie_base(app))
}

/// The name of the cookie holding the login attempt of `state`.
pub(super) fn login_name(app: &App, state: &str) -> String {
    // The state is base64url: its characters are valid in a cookie name.
    let tag: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(12).collect();
    format!("{}{tag}", login_cookie_prefix(app))
}

/// The cookies to set when a login starts: `attempt`, sealed, and when the
/// browser already keeps as many login cookies as allowed, the clearing
/// of those.
pub(super) fn login_start(app: &App, headers: &HeaderMap, attempt: &LoginAttempt) -> Vec<String> {
    let payload = serde_json::to_vec(attempt).expect("login attempt serialises");
    let sealed = app.sealer.seal(Purpose::Login, &payload);
    let prefix = login_cookie_prefix(app);
    let existing: Vec<&str> = cookie_pairs(headers).filter(|(n, _)| n.starts_with(&prefix)).map(|(n, _)| n).collect();
    let mut out = Vec::new();
    if existing.len() >= MAX_LOGIN_COOKIES {
        out.extend(existing.into_iter().map(|name| expire_login(app, name)));
    }
    let secure = app.config.session.cookie_secure;
    out.push(set_cookie(&login_name(app, &attempt.state), &sealed, &app.login_cookie_path, None, secure, Some(LOGIN_TIMEOUT.as_secs())));
    out
}

/// The login attempt the cookie `name` holds, if it opens.
pub(super) fn login_attempt(app: &App, headers: &HeaderMap, name: &str) -> Option<LoginAttempt> {
    cookies(headers, name)
        .find_map(|v| app.sealer.open(Purpose::Login, v))
        .and_then(|opened| serde_json::from_slice::<LoginAttempt>(&opened.payload).ok())
}

/// Clears the login cookie `name`.
pub(super) fn expire_login(app: &App, name: &str) -> String {
    expire_cookie(name, &app.login_cookie_path, None, app.config.session.cookie_secure)
}

/// A `Set-Cookie` value. A `__Secure-` or `__Host-` name always gets
/// `Secure`, and a `__Host-` one never a Domain (configuration refuses
/// both mismatches; this keeps every cookie valid for its name regardless).
fn set_cookie(name: &str, value: &str, path: &str, domain: Option<&str>, secure: bool, max_age: Option<u64>) -> String {
    let host = name.starts_with("__Host-");
    debug_assert!(!host || path == "/", "a __Host- cookie needs Path=/");
    let secure = secure || host || name.starts_with("__Secure-");
    let domain = domain.filter(|_| !host);
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(d) = domain {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

fn expire_cookie(name: &str, path: &str, domain: Option<&str>, secure: bool) -> String {
    set_cookie(name, "", path, domain, secure, Some(0))
}

/// Adds `cookie` (a `Set-Cookie` value) to `response`.
pub(super) fn add(response: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
