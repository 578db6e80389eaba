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
    /// `/oauth2/tokens` reading or writing the person's tokens.
    Tokens,
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
    /// A credential (`[api]`) that is refused: 401 with the challenges
    /// (RFC 6750's `invalid_token`), never a redirect to sign in.
    CredentialRefused,
    /// A valid provider token without a scope `api.required_scopes` asks
    /// for: 403 with RFC 6750's `insufficient_scope`.
    InsufficientScope,
    /// Too many credentials refused from this address: 429, with the
    /// seconds until it may try again.
    TooManyFailures(u64),
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
        Failure::CredentialRefused => {
            let mut r = text(StatusCode::UNAUTHORIZED, "invalid credential\n");
            // A Basic challenge too: a WebDAV or CalDAV client asks its
            // user for the password (the token) again.
            for challenge in ["Bearer realm=\"portcullis\", error=\"invalid_token\"", "Basic realm=\"portcullis\", charset=\"UTF-8\""] {
                r.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            r
        }
        Failure::InsufficientScope => {
            let mut r = text(StatusCode::FORBIDDEN, "insufficient scope\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"insufficient_scope\""),
            );
            r
        }
        Failure::TooManyFailures(wait) => {
            let mut r = text(StatusCode::TOO_MANY_REQUESTS, "too many refused credentials from this address; try again later\n");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
            r
        }
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
        Step::Tokens => page(app, headers, status, "Tokens unavailable", "The session store cannot be reached right now. Please try again in a moment."),
    }
}

/// How a verify that failed this way is counted.
pub(super) fn outcome(failure: &Failure) -> Outcome {
    match failure {
        Failure::Denied | Failure::InsufficientScope => Outcome::Deny,
        Failure::Unavailable(_) => Outcome::Error,
        Failure::CredentialRefused | Failure::TooManyFailures(_) => Outcome::Unauthenticated,
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

/// The same page for a browser that is (still, or again) signed in, with
/// a link to the personal access tokens page when there is one.
pub(super) fn signed_in(app: &App, headers: &HeaderMap, user: &str, sign_out: &str, tokens: Option<&str>) -> Response<Body> {
    let message = format!("You are signed in as {user}.");
    if !wants_html(headers) {
        return json(StatusCode::OK, &serde_json::json!({"error": "Signed in", "message": message}));
    }
    let link = context! { href => sign_out, text => "Sign out" };
    html(app, StatusCode::OK, "Signed in", "message.html", context! { message, link, tokens })
}

/// A personal access token as the tokens page lists it (dates as text).
#[derive(serde::Serialize)]
pub(super) struct TokenRow {
    /// Its record's key: what the revoke form names.
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    /// Empty: every host.
    pub hosts: Vec<String>,
}

/// The tokens page of `user`: a token just `made` (name, text; shown this
/// once), the list with a revoke button each, and the form that makes
/// one; forms carry `csrf`, and no other site may frame it (the page's
/// policy). Other clients get the same as JSON.
pub(super) fn tokens(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    user: &str,
    rows: &[TokenRow],
    csrf: &str,
    made: Option<(&str, &str)>,
) -> Response<Body> {
    if !wants_html(headers) {
        let mut body = serde_json::json!({"user": user, "tokens": rows});
        if let Some((name, token)) = made {
            body["created"] = serde_json::json!({"name": name, "token": token});
        }
        return json(status, &body);
    }
    let message = format!(
        "Signed in as {user}. A token lets an app or device that cannot sign in with a browser in as you: as a bearer token, \
         as the password of HTTP Basic (any user name), or in the header your administrator names."
    );
    let made = made.map(|(name, token)| context! { name, token });
    let rows = minijinja::Value::from(minijinja::value::Serde(rows));
    html(app, status, "Personal access tokens", "tokens.html", context! { message, rows, csrf, made })
}

