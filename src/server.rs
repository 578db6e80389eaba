//! The HTTP service: routing and the endpoints proxies and browsers call.
//!
//! - `/auth/nginx`, `/auth/forward`: the verify endpoints (forward-auth).
//! - `/oauth2/start`, `/oauth2/callback`, `/oauth2/logout`, `/oauth2/userinfo`.
//! - `/healthz`, `/readyz`.
//!
//! A verify request flows one way: original URL → policy bypass? → session
//! cookie → one store read → policy decision → identity headers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use url::Url;

use crate::claims::StoredClaims;
use crate::config::Config;
use crate::headers::IdentityHeaders;
use crate::identity::{Identity, Mapper};
use crate::deadline::{self, Activity};
use crate::metrics::{Endpoint, Outcome};
use crate::oidc::{LOGIN_TIMEOUT, LoginAttempt, Oidc, OidcError};
use crate::policy::{Action, Decision, Policy};
use crate::view::RequestView;
use crate::redirect::Redirects;
use crate::request::{Flavor, Original, client_ip, cookie_pairs, cookies, original_method, original_url, request_base, wants_html};
use crate::session::cookie::{Purpose, Sealer};
use crate::session::{Index, Session, SessionId, SessionStore, StoreError, StoreKey, unix_now};

type Body = Full<Bytes>;

/// Most bytes of request line and headers read for one request.
const MAX_HEADER_BYTES: usize = 64 * 1024;
// hyper also refuses more than 100 headers in one request (431).
/// Longest time in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Login cookies kept at once per browser (one per open login tab).
const MAX_LOGIN_COOKIES: usize = 4;

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

/// Everything a request needs, built once at start.
pub struct App {
    config: Config,
    store: Arc<dyn SessionStore>,
    sealer: Sealer,
    oidc: Arc<Oidc>,
    graph: crate::graph::Graph,
    /// What SIGHUP reloads.
    rules: arc_swap::ArcSwap<Rules>,
    redirects: Redirects,
    login_cookie_path: String,
    /// Who may ask the verify endpoints.
    trusted: crate::peers::TrustedProxies,
    refresh_waits: crate::upkeep::Waits,
}

/// The settings a reload replaces without a restart: identity rules,
/// policy and headers, compiled from one configuration.
pub struct Rules {
    /// The configuration they were compiled from.
    config: Config,
    mapper: Mapper,
    policy: Policy,
    headers: IdentityHeaders,
    upstream: crate::headers::UpstreamHeaders,
    /// Sessions keep their claims (a policy expression or `debug_explain`
    /// reads them); otherwise they keep none.
    keep_claims: bool,
}

impl Rules {
    fn new(config: Config) -> Result<Rules, crate::config::ConfigError> {
        let policy = Policy::new(&config)?;
        Ok(Rules {
            keep_claims: policy.reads_claims() || config.debug_explain,
            mapper: Mapper::new(&config)?,
            policy,
            headers: IdentityHeaders::new(&config.headers)?,
            upstream: crate::headers::UpstreamHeaders::load(&config.upstream_headers)?,
            config,
        })
    }
}

impl App {
    /// Builds the service from a validated configuration and starts
    /// provider discovery in the background.
    pub fn new(config: Config) -> Result<Arc<App>, StartError> {
        let store = crate::session::open_store(&config)?;
        Self::with_store(config, store)
    }

    /// As [`App::new`] with a given store.
    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Result<Arc<App>, StartError> {
        if config.session.keys_generated {
            tracing::warn!(
                "no session.keys configured: generated a random key; sessions end when portcullis restarts"
            );
        }
        let oidc = Oidc::new(&config);
        oidc.discover_in_background();
        let login_cookie_path = config.endpoint_url("/oauth2/").path().to_string();
        Ok(Arc::new(App {
            sealer: Sealer::new(&config.session.keys),
            graph: crate::graph::Graph::new(&config)?,
            rules: arc_swap::ArcSwap::from_pointee(Rules::new(config.clone())?),
            redirects: Redirects::new(config.allowed_redirect_domains.clone()),
            trusted: crate::peers::TrustedProxies::new(config.trusted_proxies.clone()),
            store,
            oidc,
            login_cookie_path,
            refresh_waits: crate::upkeep::Waits::new(&config.session),
            config,
        }))
    }
}

impl App {
    fn upkeep<'a>(&'a self, rules: &'a Rules) -> crate::upkeep::Upkeep<'a> {
        crate::upkeep::Upkeep {
            store: &self.store,
            oidc: &self.oidc,
            mapper: &rules.mapper,
            keep_claims: rules.keep_claims,
            graph: &self.graph,
            config: &self.config.session,
            waits: &self.refresh_waits,
        }
    }

    /// Replaces identity rules, policy and header settings with those of
    /// `config`; on an error the current ones stay. Sessions are kept. Other
    /// settings (listen, oidc, session, graph) take effect at a restart.
    pub fn reload(&self, config: Config) -> Result<(), crate::config::ConfigError> {
        let rules = Rules::new(config)?;
        self.rules.store(Arc::new(rules));
        Ok(())
    }
}

/// Binds `config.listen` and serves until `shutdown` completes. SIGHUP
/// reloads identity rules, policy and headers from `config_file` (and the
/// environment).
pub async fn run(
    config: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let addr = config.listen.clone();
    let listener = TcpListener::bind(&addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let metrics = match &config.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
            Some(tokio::spawn(serve_metrics(l, config.header_timeout)))
        }
        None => None,
    };
    let app = App::new(config)?;
    let reloader = tokio::spawn(reload_on_hangup(Arc::clone(&app), config_file));
    serve(app, listener, shutdown).await;
    reloader.abort();
    if let Some(task) = metrics {
        task.abort();
    }
    Ok(())
}

async fn reload_on_hangup(app: Arc<App>, path: Option<std::path::PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; configuration reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        let result = Config::load(path.as_deref()).and_then(|config| app.reload(config));
        match result {
            Ok(()) => tracing::info!(
                event = "config_reloaded",
                "configuration reloaded: identity rules, policy and headers (other settings take effect at a restart)"
            ),
            Err(e) => tracing::error!(
                event = "config_reload_rejected",
                error = %e,
                "configuration reload rejected; the previous configuration keeps serving"
            ),
        }
    }
}

/// A listener of its own for `/metrics` (`metrics_listen`), so it can stay
/// off the network the proxies reach.
///
/// Few requests come here: hyper's own `header_read_timeout` keeps
/// `header_timeout`.
async fn serve_metrics(listener: TcpListener, header_timeout: Duration) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics on {addr}/metrics");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let mut r = match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => metrics_page(),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            };
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok::<_, Infallible>(r)
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves on `listener` until `shutdown` completes, then drains in-flight
/// requests for a bounded time.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening on {addr}");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // `header_timeout` is kept by `deadline`, at less cost per request.
        .header_read_timeout(None)
        .max_header_size(MAX_HEADER_BYTES)
        // Otherwise hyper reads ahead while a request is answered, to see
        // whether the client left; that read needs a fresh 8 KiB buffer
        // each time, since the request still holds the old one. Answers
        // are quick, and one to a client that has left is harmless.
        .half_close(true);
    // At most `max_connections` at once; beyond that, new connections wait
    // in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(app.config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let activity = Arc::new(Activity::default());
                let service = {
                    let (app, activity) = (Arc::clone(&app), Arc::clone(&activity));
                    hyper::service::service_fn(move |req| {
                        let app = Arc::clone(&app);
                        let in_flight = activity.begin();
                        async move {
                            let response = handle(&app, req, peer).await;
                            drop(in_flight);
                            Ok::<_, Infallible>(response)
                        }
                    })
                };
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                let period = app.config.header_timeout;
                tokio::spawn(async move {
                    let _slot = slot;
                    match deadline::serve_within(conn, &activity, period).await {
                        Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                        Some(Ok(())) => {}
                        None => tracing::debug!(%peer, "closed a connection that sent no request within header_timeout"),
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain time exceeded; closing remaining connections");
    }
}

async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let mut response = match (req.method(), path) {
        (_, "/auth/nginx") => verify(app, &req, Flavor::Nginx, peer).await,
        (_, "/auth/forward") => verify(app, &req, Flavor::Forward, peer).await,
        (&Method::GET, "/metrics") if app.config.metrics_listen.is_none() => metrics_page(),
        (&Method::GET, "/oauth2/start") => start(app, &req),
        (&Method::GET, "/oauth2/callback") => callback(app, &req, peer).await,
        (&Method::GET | &Method::POST, "/oauth2/logout") => logout(app, &req).await,
        (&Method::GET, "/oauth2/userinfo") => userinfo(app, &req).await,
        (&Method::POST, "/oauth2/backchannel-logout") => backchannel_logout(app, req).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(app).await,
        _ => page(&req, StatusCode::NOT_FOUND, "Not found", "There is nothing at this address."),
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn verify(app: &App, req: &Request<Incoming>, flavor: Flavor, peer: SocketAddr) -> Response<Body> {
    let started = std::time::Instant::now();
    let (response, outcome) = verify_inner(app, req, flavor, peer).await;
    let endpoint = match flavor {
        Flavor::Nginx => Endpoint::Nginx,
        Flavor::Forward => Endpoint::Forward,
    };
    crate::metrics::get().verify(endpoint, outcome, started.elapsed());
    response
}

/// The answer and its outcome for the metrics.
async fn verify_inner(
    app: &App,
    req: &Request<Incoming>,
    flavor: Flavor,
    peer: SocketAddr,
) -> (Response<Body>, Outcome) {
    if !app.trusted.admits(peer.ip()) {
        return (page(req, StatusCode::FORBIDDEN, "Forbidden", "This address may not ask for verification."), Outcome::BadRequest);
    }
    let bad = |reason| (page(req, StatusCode::BAD_REQUEST, "Bad request", reason), Outcome::BadRequest);
    let original = match original_url(req.headers(), flavor, app.config.public_url.scheme()) {
        Ok(u) => u,
        Err(reason) => return bad(reason),
    };
    let info = match original_method(req.headers(), flavor)
        .and_then(|method| Ok(RequestView { method, ..RequestView::new(original.host(), original.path(), None)? }))
    {
        Ok(v) => v,
        Err(reason) => return bad(reason),
    };
    let rules = app.rules.load();
    let matched = rules.policy.matching_rule(&info);
    if matches!(matched, Some((_, Action::Bypass))) {
        return (text(StatusCode::OK, ""), Outcome::Bypass);
    }
    // Fail closed when the store cannot answer; it logs the outage once.
    let unavailable = || (text(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable\n"), Outcome::Error);
    let loaded = match load_session(app, req.headers()).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return (signed_out(app, req, flavor, &original), Outcome::Unauthenticated),
        Err(_) => return unavailable(),
    };
    let session = match app.upkeep(&rules).check(&loaded.key, loaded.session).await {
        Ok(Some(session)) => session,
        Ok(None) => return (signed_out(app, req, flavor, &original), Outcome::Unauthenticated),
        Err(_) => return unavailable(),
    };
    if session.claims_partial && rules.policy.reads_claims() {
        // Made before a reload brought expressions that read claims, which
        // this session did not keep: a new sign-in brings them.
        if app.store.delete(&loaded.key).await.is_err() {
            return unavailable();
        }
        crate::session::ended::reconfigured(&session.identity);
        return (signed_out(app, req, flavor, &original), Outcome::Unauthenticated);
    }
    match rules.policy.decide_matched(matched, &info, &session.identity, &session.claims) {
        Decision::Allow { .. } => {
            let mut response = text(StatusCode::OK, "");
            // Room for the identity headers and Cache-Control at once.
            response.headers_mut().reserve(8);
            rules.headers.write(&session.identity, response.headers_mut());
            rules.upstream.write(session.identity.user(), response.headers_mut());
            if loaded.stale_key {
                // Sealed with an older key: seal it again with the current one.
                add_cookie(&mut response, &session_cookie(app, &app.sealer.seal(Purpose::Session, loaded.id.as_bytes())));
            }
            (response, Outcome::Allow)
        }
        Decision::Deny { reason, .. } => {
            tracing::info!(
                event = "access_denied",
                user = %session.identity.user(),
                subject = %session.identity.subject(),
                client_ip = %client_ip(req.headers(), peer),
                host = %info.host,
                path = %info.path,
                reason = %reason,
                "access denied"
            );
            (page(req, StatusCode::FORBIDDEN, "Forbidden", "You are signed in but not allowed here."), Outcome::Deny)
        }
    }
}

fn metrics_page() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(crate::metrics::get().render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn signed_out(app: &App, req: &Request<Incoming>, flavor: Flavor, original: &Original) -> Response<Body> {
    if flavor == Flavor::Forward && wants_html(req.headers()) {
        let original = match original.url() {
            Ok(url) => url,
            Err(reason) => return page(req, StatusCode::BAD_REQUEST, "Bad request", reason),
        };
        let mut start = app.config.endpoint_url("/oauth2/start");
        start.query_pairs_mut().append_pair("rd", original.as_str());
        return redirect(start.as_str());
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "not signed in\n");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Cookie realm=\"portcullis\""));
    r
}

/// A session found through the request's cookie.
struct Loaded {
    id: SessionId,
    /// The store's key for it (hashed once per request).
    key: StoreKey,
    session: Arc<Session>,
    /// The cookie was sealed with an older key.
    stale_key: bool,
}

/// Most distinct session cookie values tried for one request: a browser
/// may send two (say, one for the host and an older one for the parent
/// domain); more only cost store reads.
const MAX_SESSION_CANDIDATES: usize = 2;

/// The signed-in session, if the cookie opens and the store knows it.
async fn load_session(app: &App, headers: &HeaderMap) -> Result<Option<Loaded>, StoreError> {
    let mut tried: [Option<&str>; MAX_SESSION_CANDIDATES] = [None; MAX_SESSION_CANDIDATES];
    for value in cookies(headers, &app.config.session.cookie_name) {
        if tried.contains(&Some(value)) {
            continue;
        }
        let Some(slot) = tried.iter_mut().find(|t| t.is_none()) else { break };
        *slot = Some(value);
        let Some(opened) = app.sealer.open(Purpose::Session, value) else { continue };
        let Some(id) = SessionId::from_bytes(&opened.payload) else { continue };
        let key = id.store_key();
        if let Some(session) = app.store.get(&key).await? {
            if session.remaining().is_some() {
                return Ok(Some(Loaded { id, key, session, stale_key: opened.stale_key }));
            }
        }
    }
    Ok(None)
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Validates the `rd` parameter; without one, the original host's root, or
/// `public_url` when that host is not allowed.
fn return_url(app: &App, req: &Request<Incoming>) -> Result<Url, String> {
    let base = request_base(req.headers(), app.config.public_url.scheme());
    match query_param(req, "rd") {
        Some(rd) => app.redirects.validate(&rd, base.as_ref()).map_err(|e| e.to_string()),
        None => Ok(base
            .filter(|b| app.redirects.check_url(b).is_ok())
            .unwrap_or_else(|| app.config.endpoint_url("/"))),
    }
}

fn start(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let rd = match return_url(app, req) {
        Ok(u) => u,
        Err(reason) => return page(req, StatusCode::BAD_REQUEST, "Bad request", &reason),
    };
    let (auth_url, attempt) = match app.oidc.begin(&rd) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "login cannot start");
            return page(
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The identity provider cannot be reached right now. Please try again in a moment.",
            );
        }
    };
    let payload = serde_json::to_vec(&attempt).expect("login attempt serialises");
    let sealed = app.sealer.seal(Purpose::Login, &payload);
    let mut response = redirect(auth_url.as_str());
    // Keep a bounded number of login cookies: clear the others when full.
    let prefix = login_cookie_prefix(app);
    let existing: Vec<&str> = cookie_pairs(req.headers()).filter(|(n, _)| n.starts_with(&prefix)).map(|(n, _)| n).collect();
    if existing.len() >= MAX_LOGIN_COOKIES {
        for name in existing {
            add_cookie(&mut response, &expire_cookie(name, &app.login_cookie_path, None, app.config.session.cookie_secure));
        }
    }
    let cookie = set_cookie(
        &login_cookie_name(app, &attempt.state),
        &sealed,
        &app.login_cookie_path,
        None,
        app.config.session.cookie_secure,
        Some(LOGIN_TIMEOUT.as_secs()),
    );
    add_cookie(&mut response, &cookie);
    response
}

fn login_cookie_prefix(app: &App) -> String {
    format!("{}_login_", scoped_cookie_base(app))
}

fn login_cookie_name(app: &App, state: &str) -> String {
    // The state is base64url: its characters are valid in a cookie name.
    let tag: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(12).collect();
    format!("{}{tag}", login_cookie_prefix(app))
}

async fn callback(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let client_ip = client_ip(req.headers(), peer);
    let state = query_param(req, "state").unwrap_or_default();
    // The login attempt this browser started with this state, if any. Only
    // then is its cookie spent: a stray callback must not cancel a login
    // in progress.
    let cookie_name = (!state.is_empty()).then(|| login_cookie_name(app, &state));
    let attempt = cookie_name
        .as_deref()
        .and_then(|name| cookies(req.headers(), name).find_map(|v| app.sealer.open(Purpose::Login, v)))
        .and_then(|opened| serde_json::from_slice::<LoginAttempt>(&opened.payload).ok())
        .filter(|a| constant_time_eq(a.state.as_bytes(), state.as_bytes()));
    let mut response = callback_inner(app, req, attempt.as_ref(), &client_ip).await;
    if let (Some(name), Some(_)) = (cookie_name, attempt) {
        add_cookie(&mut response, &expire_cookie(&name, &app.login_cookie_path, None, app.config.session.cookie_secure));
    }
    response
}

async fn callback_inner(
    app: &App,
    req: &Request<Incoming>,
    attempt: Option<&LoginAttempt>,
    client_ip: &str,
) -> Response<Body> {
    if let Some(error) = query_param(req, "error") {
        let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        tracing::info!(event = "login_refused", reason = %format!("provider answered error={error}"), client_ip, "login refused by the identity provider");
        crate::metrics::get().login("refused", "provider_error");
        let status = if error == "access_denied" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        return page(req, status, "Sign-in refused", &format!("The identity provider refused the sign-in ({error})."));
    }
    let Some(attempt) = attempt.filter(|a| unix_now().saturating_sub(a.created_at) <= LOGIN_TIMEOUT.as_secs()) else {
        tracing::info!(event = "login_refused", reason = "unknown, expired or replayed state", client_ip, "login refused");
        crate::metrics::get().login("refused", "state");
        return page(
            req,
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in link is no longer valid (it expired, was already used, or was started in another browser). Please start again.",
        );
    };
    let Some(code) = query_param(req, "code").filter(|c| !c.is_empty()) else {
        return page(req, StatusCode::BAD_REQUEST, "Bad request", "The identity provider sent no authorization code.");
    };
    // The attempt lives in the browser's cookie, which can be sent again:
    // spend its state in the store first, so each attempt reaches the
    // provider's token endpoint once at most.
    match app.store.claim(&format!("login:{}", attempt.state), LOGIN_TIMEOUT).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(event = "login_refused", reason = "replayed state", client_ip, "login refused");
            crate::metrics::get().login("refused", "state");
            return page(
                req,
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in link was already used. Please start again.",
            );
        }
        Err(e) => {
            tracing::error!(event = "login_failed", reason = %e, client_ip, "the login attempt could not be recorded");
            crate::metrics::get().login("failed", "store");
            return page(req, StatusCode::SERVICE_UNAVAILABLE, "Sign-in failed", "Your sign-in could not be completed. Please try again.");
        }
    }
    let result = match app.oidc.finish(&code, &attempt).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(event = "login_failed", reason = %e, client_ip, "login failed");
            crate::metrics::get().login("failed", match &e {
                OidcError::NotReady(_) | OidcError::Unreachable(_) => "provider_unreachable",
                OidcError::Refused(_) => "provider_refused",
                OidcError::Invalid(_) => "invalid_answer",
            });
            let (status, message) = match &e {
                OidcError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "The identity provider cannot be reached right now."),
                OidcError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "The identity provider could not be reached."),
                OidcError::Refused(_) => (StatusCode::BAD_REQUEST, "The identity provider refused to complete the sign-in."),
                OidcError::Invalid(_) => (StatusCode::BAD_REQUEST, "The identity provider's answer could not be verified."),
            };
            return page(req, status, "Sign-in failed", message);
        }
    };
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
            return page(req, StatusCode::FORBIDDEN, "Access refused", &refusal.reason);
        }
    };
    let now = unix_now();
    let ttl = app.config.session.ttl;
    let id = SessionId::generate();
    let key = id.store_key();
    // The ID token is only needed at logout: the browser keeps it in a
    // sealed cookie sent only to the logout endpoint, so the store does not
    // hold it for the whole session. Too large for a cookie, it is stored.
    let hint = logout_hint_cookie(app, &key, &result.id_token);
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
        identity,
    };
    let session = Arc::new(session);
    if let Err(e) = app.store.put(&key, session.clone(), ttl).await {
        tracing::error!(event = "login_failed", reason = %e, client_ip, "session could not be stored");
        crate::metrics::get().login("failed", "store");
        return page(req, StatusCode::SERVICE_UNAVAILABLE, "Sign-in failed", "Your session could not be saved. Please try again.");
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
    // One person holds at most max_sessions_per_user sessions.
    let max = app.config.session.max_sessions_per_user as usize;
    match crate::session::end_oldest_beyond(&*app.store, identity.subject(), &key, max).await {
        Ok(ended) => {
            ended.iter().for_each(|s| crate::session::ended::too_many(&s.identity));
        }
        Err(e) => tracing::warn!(error = %e, subject = %identity.subject(), "older sessions of this person could not be counted"),
    }
    let mut response = redirect(&attempt.rd);
    add_cookie(&mut response, &session_cookie(app, &app.sealer.seal(Purpose::Session, id.as_bytes())));
    if let Some(hint) = hint {
        add_cookie(&mut response, &hint);
    }
    response
}

/// Largest sealed logout hint put in a cookie; browsers keep cookies of up
/// to 4096 bytes, name and attributes included.
const MAX_HINT_COOKIE: usize = 3800;

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

fn logout_hint_name(app: &App) -> String {
    format!("{}_logout", scoped_cookie_base(app))
}

fn logout_hint_path(app: &App) -> String {
    app.config.endpoint_url("/oauth2/logout").path().to_string()
}

/// The `Set-Cookie` value carrying `id_token` for the logout of the session
/// filed under `key`, or `None` when it would be too large for a browser to
/// keep. The sealed value is bound to that key, so a hint from another
/// session is never sent.
fn logout_hint_cookie(app: &App, key: &StoreKey, id_token: &str) -> Option<String> {
    let mut payload = Vec::with_capacity(32 + id_token.len());
    payload.extend_from_slice(key.as_bytes());
    payload.extend_from_slice(id_token.as_bytes());
    let sealed = app.sealer.seal(Purpose::LogoutHint, &payload);
    let s = &app.config.session;
    (sealed.len() <= MAX_HINT_COOKIE)
        .then(|| set_cookie(&logout_hint_name(app), &sealed, &logout_hint_path(app), s.cookie_domain.as_deref(), s.cookie_secure, Some(s.ttl.as_secs())))
}

/// The ID token a logout hint cookie holds for the session filed under `key`.
fn logout_hint(app: &App, headers: &HeaderMap, key: &StoreKey) -> Option<String> {
    cookies(headers, &logout_hint_name(app)).find_map(|value| {
        let opened = app.sealer.open(Purpose::LogoutHint, value)?;
        let (bound, token) = opened.payload.split_at_checked(32)?;
        if bound != key.as_bytes() {
            return None;
        }
        String::from_utf8(token.to_vec()).ok()
    })
}

fn session_cookie(app: &App, value: &str) -> String {
    let s = &app.config.session;
    set_cookie(&s.cookie_name, value, "/", s.cookie_domain.as_deref(), s.cookie_secure, Some(s.ttl.as_secs()))
}

async fn logout(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let rd = match query_param(req, "rd") {
        Some(_) => match return_url(app, req) {
            Ok(u) => Some(u),
            Err(reason) => return page(req, StatusCode::BAD_REQUEST, "Bad request", &reason),
        },
        None => None,
    };
    let s = &app.config.session;
    let clear = expire_cookie(&s.cookie_name, "/", s.cookie_domain.as_deref(), s.cookie_secure);
    let clear_hint = expire_cookie(&logout_hint_name(app), &logout_hint_path(app), s.cookie_domain.as_deref(), s.cookie_secure);
    let session = match load_session(app, req.headers()).await {
        Ok(v) => v,
        Err(_) => {
            let mut r = page(req, StatusCode::SERVICE_UNAVAILABLE, "Sign-out incomplete", "The session store is unavailable; please try again.");
            add_cookie(&mut r, &clear);
            return r;
        }
    };
    let mut id_token = None;
    if let Some(Loaded { key, session, .. }) = session {
        if let Err(e) = app.store.delete(&key).await {
            tracing::error!(error = %e, "session could not be deleted at logout");
            let mut r = page(req, StatusCode::SERVICE_UNAVAILABLE, "Sign-out incomplete", "The session store is unavailable; please try again.");
            add_cookie(&mut r, &clear);
            return r;
        }
        crate::session::ended::logout(&session.identity);
        id_token = session.id_token.as_deref().map(str::to_string).or_else(|| logout_hint(app, req.headers(), &key));
    }
    let post_logout = rd.clone().unwrap_or_else(|| app.config.endpoint_url("/"));
    let mut response = match app.oidc.logout_url(id_token.as_deref(), &post_logout) {
        Some(url) => redirect(url.as_str()),
        None => match rd {
            Some(rd) => redirect(rd.as_str()),
            None => page(req, StatusCode::OK, "Signed out", "You are signed out."),
        },
    };
    add_cookie(&mut response, &clear);
    add_cookie(&mut response, &clear_hint);
    response
}

/// Largest request body read (back-channel logout).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Least time a logout token's `jti` is remembered against replay.
const JTI_MEMORY: Duration = Duration::from_secs(600);

/// How long a logout token's `jti` is remembered: as long as a token
/// carrying it can be accepted. Its `iat` may be up to `leeway` ahead, and
/// it is accepted until `iat` is `LOGOUT_TOKEN_MAX_AGE` plus `leeway` behind.
fn jti_memory(leeway: Duration) -> Duration {
    JTI_MEMORY.max(crate::oidc::LOGOUT_TOKEN_MAX_AGE + leeway * 2)
}

/// OpenID Connect Back-Channel Logout: the provider ends sessions by `sid`
/// or `sub`. 200 when the token is valid (even if no session matched), 400
/// otherwise; nothing is revoked on a 400.
async fn backchannel_logout(app: &App, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::{BodyExt as _, Limited};
    let bad = |reason: &str| {
        tracing::info!(event = "backchannel_logout_refused", reason, "back-channel logout refused");
        json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": "invalid_request", "error_description": reason}))
    };
    // A body that trickles in for longer than header_timeout is refused too.
    let read = tokio::time::timeout(app.config.header_timeout, Limited::new(req.into_body(), MAX_REQUEST_BODY).collect());
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return bad("the request body is unreadable or too large"),
        Err(_) => return bad("the request body did not arrive within header_timeout"),
    };
    let Some(token) = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned())
    else {
        return bad("no logout_token");
    };
    let claims = match app.oidc.verify_logout_token(&token).await {
        Ok(c) => c,
        Err(OidcError::NotReady(_)) | Err(OidcError::Unreachable(_)) => {
            return json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": "temporarily_unavailable"}));
        }
        Err(e) => return bad(&e.to_string()),
    };
    match app.store.claim(&format!("jti:{}", claims.jti), jti_memory(app.config.oidc.leeway)).await {
        Ok(true) => {}
        Ok(false) => return bad("the logout token was already used (jti replayed)"),
        Err(_) => return json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": "temporarily_unavailable"})),
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
        Ok(ended) => json(StatusCode::OK, &serde_json::json!({"sessions_ended": ended})),
        Err(_) => {
            // Let the provider retry: forget the jti.
            let _ = app.store.release(&format!("jti:{}", claims.jti)).await;
            json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": "temporarily_unavailable"}))
        }
    }
}

async fn userinfo(app: &App, req: &Request<Incoming>) -> Response<Body> {
    match load_session(app, req.headers()).await {
        Ok(Some(loaded)) if app.config.debug_explain => debug_explain(app, req, &loaded.session),
        Ok(Some(loaded)) => json(StatusCode::OK, &identity_json(&loaded.session.identity)),
        Ok(None) => json(StatusCode::UNAUTHORIZED, &serde_json::json!({"error": "not signed in"})),
        Err(_) => json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": "session store unavailable"})),
    }
}

/// `debug_explain = true`: the session's identity plus the explanation of
/// its claims under the current configuration, and the policy decision for
/// `?url=...&method=...` when given.
fn debug_explain(app: &App, req: &Request<Incoming>, session: &Session) -> Response<Body> {
    let request = match query_param(req, "url") {
        Some(url) => match crate::explain::request_info(&url, &query_param(req, "method").unwrap_or_else(|| "GET".into())) {
            Ok(r) => Some(r),
            Err(reason) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": reason})),
        },
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
    json(StatusCode::OK, &body)
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

async fn readyz(app: &App) -> Response<Body> {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

fn add_cookie(response: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn redirect(location: &str) -> Response<Body> {
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

/// A short readable page for browsers, or JSON for other clients. The
/// message is shown as text, never as markup.
fn page(req: &Request<Incoming>, status: StatusCode, title: &str, message: &str) -> Response<Body> {
    if wants_html(req.headers()) {
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>{t}</title></head>\n<body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\">\
             <h1>{t}</h1>\n<p>{m}</p>\n<p style=\"color:#666\">{code}</p></body></html>\n",
            t = html_escape(title),
            m = html_escape(message),
            code = status.as_u16(),
        );
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        r
    } else {
        json(status, &serde_json::json!({"error": title, "message": message}))
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
