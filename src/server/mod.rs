//! The HTTP service: the listener, SIGHUP reload, and the route table
//! ([`handle`]) that sends each endpoint to the file answering it:
//!
//! - [`verify`]: `/auth/nginx`, `/auth/forward` (forward-auth), with
//!   [`credential`] for requests that bring a token instead of a cookie.
//! - [`login`]: `/oauth2/start`, `/oauth2/callback`.
//! - [`logout`]: `/oauth2/logout`, `/oauth2/signed-out`,
//!   `/oauth2/backchannel-logout`, `/oauth2/frontchannel-logout`.
//! - [`info`]: `/oauth2/userinfo`, `/readyz`, `/healthz`, `/metrics`.
//! - [`tokens`]: `/oauth2/tokens`, a person's personal access tokens.
//!
//! Beside them: [`session`] (the session a request's cookie names),
//! [`cookies`] (every cookie portcullis sets), [`query`] (query parameters
//! and return URLs) and [`respond`] (answers, and each failure's status
//! and page).

mod cookies;
mod credential;
mod info;
mod login;
mod logout;
mod query;
mod respond;
mod session;
mod tokens;
mod verify;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::deadline::{self, Activity};
use crate::oidc::Oidc;
use crate::redirect::Redirects;
use crate::request::Flavor;
use crate::session::cookie::Sealer;
use crate::session::{SessionStore, StoreError};
use respond::{Body, Failure};

/// Most bytes of request line and headers read for one request.
const MAX_HEADER_BYTES: usize = 64 * 1024;
// hyper also refuses more than 100 headers in one request (431).
/// Longest time in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Provider tokens that verified (`[api] bearer_tokens`).
    bearer: crate::credentials::BearerCache,
    /// Refused credentials per client address.
    failures: crate::credentials::Failures,
}

/// The settings a reload replaces without a restart: identity rules,
/// policy and headers, compiled from one configuration.
pub struct Rules {
    compiled: crate::rules::Rules,
    /// The upstream credentials, read.
    upstream: crate::headers::UpstreamHeaders,
}

impl std::ops::Deref for Rules {
    type Target = crate::rules::Rules;
    fn deref(&self) -> &crate::rules::Rules {
        &self.compiled
    }
}

impl Rules {
    fn new(config: Config) -> Result<Rules, crate::config::ConfigError> {
        let upstream = crate::headers::UpstreamHeaders::load(&config.upstream_headers)?;
        Ok(Rules { compiled: crate::rules::Rules::new(config)?, upstream })
    }
}

impl App {
    /// Builds the service from a validated configuration and starts
    /// provider discovery in the background.
    pub fn new(config: Config) -> Result<Arc<App>, StartError> {
        let store = crate::session::open_store(&config.session)?;
        Self::with_store(config, store)
    }

    /// As [`App::new`] with a given store.
    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Result<Arc<App>, StartError> {
        if config.session.keys_generated {
            tracing::warn!(
                "no session.keys configured: generated a random key; sessions end when portcullis restarts"
            );
        }
        let oidc = Oidc::new(&config.oidc, &config.callback_url(), config.identity.claim_sources.contains(&crate::claims::ClaimSource::AccessToken));
        oidc.discover_in_background();
        let login_cookie_path = config.endpoint_url("/oauth2/").path().to_string();
        Ok(Arc::new(App {
            sealer: Sealer::new(&config.session.keys),
            graph: crate::graph::Graph::new(&config.graph, &config.oidc)?,
            rules: arc_swap::ArcSwap::from_pointee(Rules::new(config.clone())?),
            redirects: Redirects::new(config.allowed_redirect_domains.clone()),
            trusted: crate::peers::TrustedProxies::new(config.trusted_proxies.clone()),
            store,
            oidc,
            login_cookie_path,
            refresh_waits: crate::upkeep::Waits::new(&config.session),
            bearer: Default::default(),
            failures: crate::credentials::Failures::new(config.api.max_failures_per_minute),
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
        // Provider tokens are mapped again, with the new rules.
        self.bearer.clear();
        Ok(())
    }

    /// `api.token_header`, as the value of a header.
    fn token_header_value(&self) -> HeaderValue {
        let name = self.config.api.token_header.as_deref().unwrap_or_default();
        HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static(""))
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
            let r = match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => info::metrics(),
                _ => respond::text(StatusCode::NOT_FOUND, "not found\n"),
            };
            Ok::<_, Infallible>(no_store(r))
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

/// The route table: every endpoint, and the flow that answers it.
async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let answer = match (req.method(), path) {
        (_, "/auth/nginx") => Ok(verify::verify(app, &req, Flavor::Nginx, peer).await),
        (_, "/auth/forward") => Ok(verify::verify(app, &req, Flavor::Forward, peer).await),
        (&Method::GET, "/metrics") if app.config.metrics_listen.is_none() => Ok(info::metrics()),
        (&Method::GET, "/oauth2/start") => login::start(app, &req),
        (&Method::GET, "/oauth2/callback") => Ok(login::callback(app, &req, peer).await),
        // It reads the form's body: the request is the handler's.
        (&Method::GET | &Method::POST, "/oauth2/logout") => return no_store(logout::logout(app, req).await),
        (&Method::GET, "/oauth2/signed-out") => Ok(logout::signed_out(app, &req).await),
        (&Method::GET, "/oauth2/frontchannel-logout") => Ok(logout::frontchannel(app, &req).await),
        (&Method::GET, "/oauth2/userinfo") => info::userinfo(app, &req).await,
        (&Method::GET, "/oauth2/tokens") if app.config.api.personal_tokens => Ok(tokens::page(app, &req).await),
        // It reads the form's body: the request is the handler's.
        (&Method::POST, "/oauth2/tokens") if app.config.api.personal_tokens => return no_store(tokens::post(app, req).await),
        // It reads the body: the request is the handler's.
        (&Method::POST, "/oauth2/backchannel-logout") => return no_store(logout::backchannel(app, req).await),
        (&Method::GET, "/healthz") => Ok(info::healthz()),
        (&Method::GET, "/readyz") => Ok(info::readyz(app).await),
        _ => Err(Failure::NotFound),
    };
    no_store(answer.unwrap_or_else(|failure| respond::failure(app, req.headers(), failure)))
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

