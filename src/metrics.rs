//! What portcullis counts, for Prometheus: `/metrics` in the OpenMetrics
//! text format (which Prometheus scrapes as is).
//!
//! One process-wide set of metrics ([`get`]), recorded where things happen:
//! verify answers and their latency, logins and why they failed, refreshes,
//! session store errors and latency, Microsoft Graph calls and cache hits,
//! sessions created and ended. Recording is a counter bump behind a read
//! lock: cheap enough for the verify path.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of fixed names and static values.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Verify endpoints' labels, indexed by [`Endpoint`].
pub const ENDPOINTS: [&str; 2] = ["nginx", "forward"];
/// Verify outcomes' labels, indexed by [`Outcome`].
pub const OUTCOMES: [&str; 6] = ["allow", "bypass", "unauthenticated", "deny", "bad_request", "error"];
/// Session refresh outcomes' labels.
pub const REFRESH_OUTCOMES: [&str; 3] = ["success", "refused", "postponed"];
/// Microsoft Graph lookup outcomes' labels.
pub const GRAPH_OUTCOMES: [&str; 3] = ["success", "error", "timeout"];

/// Which verify endpoint answered; its value indexes [`ENDPOINTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/auth/nginx`
    Nginx = 0,
    /// `/auth/forward`
    Forward = 1,
}

/// How a verify ended; its value indexes [`OUTCOMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allow = 0,
    Bypass = 1,
    Unauthenticated = 2,
    Deny = 3,
    BadRequest = 4,
    Error = 5,
}

/// Every metric portcullis exports.
pub struct Metrics {
    registry: Registry,
    /// The verify counters made once, so the hot path only bumps one.
    verify_by: [[Counter; OUTCOMES.len()]; ENDPOINTS.len()],
    /// The session cache's hit and miss counters (in `cache`), made once:
    /// the redis store's verifies bump one each.
    session_cache: [Counter; 2],
    /// The same for the cache of verified provider bearer tokens.
    bearer_cache: [Counter; 2],
    /// Verify answers by `endpoint` (`nginx`, `forward`) and `outcome`
    /// (`allow`, `bypass`, `unauthenticated`, `deny`, `bad_request`, `error`).
    pub verify: Family<Labels<2>, Counter>,
    /// Time to answer a verify, in seconds.
    pub verify_seconds: Histogram,
    /// Logins by `outcome` (`success`, `refused`, `failed`) and `reason`.
    pub logins: Family<Labels<2>, Counter>,
    /// Session refreshes by `outcome` (`success`, `refused`, `postponed`).
    pub refreshes: Family<Labels<1>, Counter>,
    /// Failed session store calls.
    pub store_errors: Counter,
    /// Time per session store call (Redis), in seconds.
    pub store_seconds: Histogram,
    /// Microsoft Graph lookups by `outcome` (`success`, `error`, `timeout`).
    pub graph_calls: Family<Labels<1>, Counter>,
    /// Cache lookups by `cache` (`graph_memberships`, `graph_names`) and
    /// `result` (`hit`, `miss`).
    pub cache: Family<Labels<2>, Counter>,
    pub sessions_created: Counter,
    /// Sessions ended by `reason` (see [`crate::session::ended`]: `logout`,
    /// `idle`, `refresh_refused`, `no_longer_allowed`, `reconfigured`,
    /// `backchannel`, `too_many`).
    pub sessions_ended: Family<Labels<1>, Counter>,
    /// Credentials (`[api]`) refused, by `kind` (`personal`, `bearer`)
    /// and `reason` (`invalid`, `expired`, `revoked`, `host`, `scope`,
    /// `identity`, `rate_limited`).
    pub credentials_refused: Family<Labels<2>, Counter>,
    /// Personal access tokens made on `/oauth2/tokens`.
    pub tokens_created: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let verify: Family<Labels<2>, Counter> = Family::default();
        let verify_by =
            ENDPOINTS.map(|e| OUTCOMES.map(|o| verify.get_or_create(&[("endpoint", e), ("outcome", o)]).clone()));
        let cache: Family<Labels<2>, Counter> = Family::default();
        let session_cache =
            ["hit", "miss"].map(|r| cache.get_or_create(&[("cache", "sessions"), ("result", r)]).clone());
        // Families with a fixed set of outcomes are exported at 0 from the
        // start, so a dashboard or an alert (`rate(...) > 0`) sees them
        // before the first refresh or Graph call rather than no series.
        let refreshes: Family<Labels<1>, Counter> = Family::default();
        for o in REFRESH_OUTCOMES {
            drop(refreshes.get_or_create(&[("outcome", o)]));
        }
        let graph_calls: Family<Labels<1>, Counter> = Family::default();
        for o in GRAPH_OUTCOMES {
            drop(graph_calls.get_or_create(&[("outcome", o)]));
        }
        let bearer_cache =
            ["hit", "miss"].map(|r| cache.get_or_create(&[("cache", "bearer_tokens"), ("result", r)]).clone());
        let m = Metrics {
            verify_by,
            session_cache,
            bearer_cache,
            verify,
            // 50 µs .. ~1.6 s
            verify_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            logins: Family::default(),
            refreshes,
            store_errors: Counter::default(),
            store_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            graph_calls,
            cache,
            sessions_created: Counter::default(),
            sessions_ended: Family::default(),
            credentials_refused: Family::default(),
            tokens_created: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("verify_requests", "Verify answers by endpoint and outcome", m.verify.clone());
        registry.register("verify_duration_seconds", "Time to answer a verify", m.verify_seconds.clone());
        registry.register("logins", "Logins by outcome and reason", m.logins.clone());
        registry.register("session_refreshes", "Session refreshes by outcome", m.refreshes.clone());
        registry.register("store_errors", "Failed session store calls", m.store_errors.clone());
        registry.register("store_duration_seconds", "Time per session store call", m.store_seconds.clone());
        registry.register("graph_calls", "Microsoft Graph lookups by outcome", m.graph_calls.clone());
        registry.register("cache_lookups", "Cache lookups by cache and result", m.cache.clone());
        registry.register("sessions_created", "Sessions created at login", m.sessions_created.clone());
        registry.register("sessions_ended", "Sessions ended by reason", m.sessions_ended.clone());
        registry.register("credentials_refused", "Credentials refused by kind and reason", m.credentials_refused.clone());
        registry.register("tokens_created", "Personal access tokens made", m.tokens_created.clone());
        Metrics { registry, ..m }
    }

    /// The metrics as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one verify.
    pub fn verify(&self, endpoint: Endpoint, outcome: Outcome, took: Duration) {
        self.verify_by[endpoint as usize][outcome as usize].inc();
        self.verify_seconds.observe(took.as_secs_f64());
    }

    pub fn login(&self, outcome: &'static str, reason: &'static str) {
        self.logins.get_or_create(&[("outcome", outcome), ("reason", reason)]).inc();
    }

    pub fn refresh(&self, outcome: &'static str) {
        self.refreshes.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn graph(&self, outcome: &'static str) {
        self.graph_calls.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Counts one lookup in the redis store's in-process session cache.
    pub fn session_cache(&self, hit: bool) {
        self.session_cache[usize::from(!hit)].inc();
    }

    pub fn bearer_cache(&self, hit: bool) {
        self.bearer_cache[usize::from(!hit)].inc();
    }

    pub fn credential_refused(&self, kind: &'static str, reason: &'static str) {
        self.credentials_refused.get_or_create(&[("kind", kind), ("reason", reason)]).inc();
    }

    pub fn cache(&self, cache: &'static str, hit: bool) {
        self.cache.get_or_create(&[("cache", cache), ("result", if hit { "hit" } else { "miss" })]).inc();
    }

    pub fn session_ended(&self, reason: &'static str) {
        self.sessions_ended.get_or_create(&[("reason", reason)]).inc();
    }
}
