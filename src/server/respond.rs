//! Answers: pages, JSON, text and redirects, and the one mapping from each
//! kind of failure to its status and body ([`Failure`], [`failure`]).
//!
//! Handlers say what went wrong; this file says how that is answered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use minijinja::context;

use super::App;
use crate::metrics::Outcome;
use crate::oidc::OidcError;
use crate::request::wants_html;

pub(super) type Body = Full<Bytes>;

/// Where a service portcullis depends on could not answer (the session
/// store; at sign-in start and for back-channel logout, the provider too).
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    /// A verify endpoint reading or updating the session.
    Verify,
    /// `/oauth2/start`: the provider cannot be reached.
    Start,
    /// The callback recording that a login attempt is spent.
    SpendAttempt,
    /// The callback storing the new session.
    SaveSession,
    /// `/oauth2/logout` reading or deleting the session.
    Logout,
    /// `/oauth2/userinfo` reading the session.
    Userinfo,
    /// Back-channel logout: the provider's keys or the store.
    Backchannel,
}

/// What went wrong, by kind; [`failure`] turns each into its answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// A request portcullis cannot read: 400.
    BadRequest(String),
    /// A verify asked by an address that may not: 403.
    UntrustedPeer,
    /// Signed in, but the policy does not allow this request: 403.
    Denied,
    /// Something portcullis depends on could not answer: 503.
    Unavailable(Step),
    /// `/oauth2/userinfo` without a session: 401.
    NotSignedIn,
    /// `/oauth2/userinfo?url=` (debug explain) that cannot be read: 400.
    BadExplainQuery(String),
    /// A back-channel logout token that is refused: 400.
    LogoutTokenRefused(String),
    /// The provider answered the callback with `error=` (already cleaned).
    ProviderRefused(String),
    /// A callback whose state is unknown, expired or from another browser.
    AttemptExpired,
    /// A callback whose state was already spent.
    AttemptReplayed,
    /// The code could not be exchanged or its tokens not verified.
    Login(OidcError),
    /// The identity rules refuse this person (their reason, shown).
    IdentityRefused(String),
    /// No such endpoint: 404.
    NotFound,
}

impl Failure {
    /// A request that cannot be read, for `reason` (shown).
    pub(super) fn bad_request(reason: &str) -> Failure {
        Failure::BadRequest(reason.to_string())
    }
}

/// The one answer to each kind of failure. `headers` are the request's
/// (a browser gets a page, other clients JSON).
pub(super) fn failure(app: &App, headers: &HeaderMap, failure: Failure) -> Response<Body> {
    let page = |status, title, message: &str| page(app, headers, status, title, message);
    match failure {
        Failure::BadRequest(reason) => page(StatusCode::BAD_REQUEST, "Bad request", &reason),
        Failure::UntrustedPeer => page(StatusCode::FORBIDDEN, "Forbidden", "This address may not ask for verification."),
        Failure::Denied => page(StatusCode::FORBIDDEN, "Forbidden", "You are signed in but not allowed here."),
        Failure::Unavailable(step) => unavailable(app, headers, step),
        Failure::NotSignedIn => json(StatusCode::UNAUTHORIZED, &serde_json::json!({"error": "not signed in"})),
        Failure::BadExplainQuery(reason) => json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": reason})),
        Failure::LogoutTokenRefused(reason) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request", "error_description": reason}),
        ),
        Failure::ProviderRefused(error) => {
            let status = if error == "access_denied" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
            page(status, "Sign-in refused", &format!("The identity provider refused the sign-in ({error})."))
        }
        Failure::AttemptExpired => page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in link is no longer valid (it expired, was already used, or was started in another browser). Please start again.",
        ),
        Failure::AttemptReplayed => {
            page(StatusCode::BAD_REQUEST, "Sign-in expired", "This sign-in link was already used. Please start again.")
        }
        Failure::Login(e) => {
            let (status, message) = match e {
                OidcError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "The identity provider cannot be reached right now."),
                OidcError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "The identity provider could not be reached."),
                OidcError::Refused(_) => (StatusCode::BAD_REQUEST, "The identity provider refused to complete the sign-in."),
                OidcError::Invalid(_) => (StatusCode::BAD_REQUEST, "The identity provider's answer could not be verified."),
            };
            page(status, "Sign-in failed", message)
        }
        Failure::IdentityRefused(reason) => page(StatusCode::FORBIDDEN, "Access refused", &reason),
        Failure::NotFound => page(StatusCode::NOT_FOUND, "Not found", "There is nothing at this address."),
    }
}

/// The 503 of each step: the store (or provider) could not answer.
fn unavailable(app: &App, headers: &HeaderMap, step: Step) -> Response<Body> {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    match step {
        // Fails closed; the proxy shows its own error page.
        Step::Verify => text(status, "session store unavailable\n"),
        Step::Start => page(
            app,
            headers,
            status,
            "Sign-in unavailable",
            "The identity provider cannot be reached right now. Please try again in a moment.",
        ),
        Step::SpendAttempt => page(app, headers, status, "Sign-in failed", "Your sign-in could not be completed. Please try again."),
        Step::SaveSession => page(app, headers, status, "Sign-in failed", "Your session could not be saved. Please try again."),
        Step::Logout => page(app, headers, status, "Sign-out incomplete", "The session store is unavailable; please try again."),
        Step::Userinfo => json(status, &serde_json::json!({"error": "session store unavailable"})),
        // The provider retries.
        Step::Backchannel => json(status, &serde_json::json!({"error": "temporarily_unavailable"})),
    }
}

/// How a verify that failed this way is counted.
pub(super) fn outcome(failure: &Failure) -> Outcome {
    match failure {
        Failure::Denied => Outcome::Deny,
        Failure::Unavailable(_) => Outcome::Error,
        _ => Outcome::BadRequest,
    }
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    r
}

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    r
}

/// A short readable page for browsers (`message.html`), or JSON for other
/// clients. The message is shown as text, never as markup.
pub(super) fn page(app: &App, headers: &HeaderMap, status: StatusCode, title: &str, message: &str) -> Response<Body> {
    if wants_html(headers) {
        html(app, status, title, "message.html", context! { message })
    } else {
        json(status, &serde_json::json!({"error": title, "message": message}))
    }
}

/// A page of portcullis's look: `template` (one of [`crate::ui::TEMPLATES`],
/// extending `base.html`) titled `title`, with the template's own `values`
/// (escaped by the template engine). Every page portcullis serves is made
/// here, with a `Content-Security-Policy` that lets nothing but its own
/// stylesheet load.
pub(super) fn html(app: &App, status: StatusCode, title: &str, template: &str, values: minijinja::Value) -> Response<Body> {
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    match app.config.ui.pages.render(template, title, status.as_u16(), &nonce, values) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            let headers = r.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            let csp = HeaderValue::from_str(&crate::ui::content_security_policy(&nonce)).expect("the policy is ASCII");
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            text(StatusCode::INTERNAL_SERVER_ERROR, "this page could not be rendered; see portcullis's log\n")
        }
    }
}

/// The sign-out confirmation: a button that posts `token` back to the same
/// address. No other site may frame it (clickjacking: the page's policy
/// says `frame-ancestors 'none'`).
pub(super) fn confirm_logout(app: &App, headers: &HeaderMap, token: &str, everywhere: bool) -> Response<Body> {
    let (message, button) = if everywhere {
        ("Sign out of every session, on every device?", "Sign out everywhere")
    } else {
        ("Sign out of this session?", "Sign out")
    };
    if !wants_html(headers) {
        return json(StatusCode::OK, &serde_json::json!({"error": "Sign out?", "message": message}));
    }
    // No action: the form posts to this page's own address, query included.
    html(app, StatusCode::OK, "Sign out?", "confirm_logout.html", context! { message, token, button })
}

/// The page a sign-out ends on: how many sessions ended (when more than
/// this one), and a link to sign in again.
pub(super) fn signed_out(app: &App, headers: &HeaderMap, ended: Option<u64>, sign_in: &str) -> Response<Body> {
    if !wants_html(headers) {
        return json(StatusCode::OK, &serde_json::json!({"signed_out": true, "sessions_ended": ended}));
    }
    let message = match ended {
        Some(n) if n != 1 => format!("You are signed out: {n} sessions ended."),
        _ => "You are signed out.".to_string(),
    };
    let link = context! { href => sign_in, text => "Sign in again" };
    html(app, StatusCode::OK, "Signed out", "message.html", context! { message, link })
}

/// The same page for a browser that is (still, or again) signed in.
pub(super) fn signed_in(app: &App, headers: &HeaderMap, user: &str, sign_out: &str) -> Response<Body> {
    let message = format!("You are signed in as {user}.");
    if !wants_html(headers) {
        return json(StatusCode::OK, &serde_json::json!({"error": "Signed in", "message": message}));
    }
    let link = context! { href => sign_out, text => "Sign out" };
    html(app, StatusCode::OK, "Signed in", "message.html", context! { message, link })
}
