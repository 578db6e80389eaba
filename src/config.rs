//! Loading and validating portcullis's configuration.
//!
//! Sources, later ones winning: built-in defaults, one TOML file, then the
//! environment (`PORTCULLIS_` prefix, `__` between nesting levels, e.g.
//! `PORTCULLIS_OIDC__CLIENT_SECRET`). Every secret also has a `*_file` form
//! whose value is a path to read it from.
//!
//! The raw, deserialised shape ([`RawConfig`]) is turned into a validated
//! [`Config`] once, at start-up; every problem is reported as a
//! [`ConfigError`] naming the key and the reason.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::identity::{IdentityConfig, RoleMapEntry};
use crate::headers::UpstreamHeaderValue;
use crate::policy::{DefaultPolicy, PolicyRule};

/// A start-up error that names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or a value could not be deserialised.
    #[error("configuration: {0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }
}

/// A secret value: never printed by `Debug` or `Display`. Any scalar is
/// read as its text (`client_secret = 12345678` is the secret `12345678`);
/// from the environment, a secret key's value is taken exactly as written
/// (see [`env_provider`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_char<E>(self, v: char) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}

/// `session.keys`: one key, or a list of them.
fn one_or_more_secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Secret>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(Secret),
        More(Vec<Secret>),
    }
    match Option::<OneOrMore>::deserialize(d) {
        Ok(v) => Ok(v.map(|v| match v {
            OneOrMore::One(s) => vec![s],
            OneOrMore::More(list) => list,
        })),
        Err(_) => Err(serde::de::Error::custom("expected a key or a list of keys")),
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "[redacted]" })
    }
}

/// A duration written the human way: `90s`, `10m`, `12h`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write e.g. `90s`, `10m`, `12h`")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Which session store to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The configuration as written by the user, before validation.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub public_url: String,
    #[serde(default)]
    pub allowed_redirect_domains: Option<Vec<String>>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default)]
    pub debug_explain: bool,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub header_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub worker_threads: Option<usize>,
    #[serde(default)]
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub oidc: RawOidc,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub headers: HeaderNames,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub role_map: Vec<RoleMapEntry>,
    #[serde(default)]
    pub default_policy: DefaultPolicy,
    #[serde(default)]
    pub policy: Vec<PolicyRule>,
    #[serde(default)]
    pub upstream_headers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, UpstreamHeaderValue>>,
    #[serde(default)]
    pub graph: crate::graph::GraphConfig,
}

fn default_listen() -> String {
    "127.0.0.1:4180".into()
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How portcullis authenticates at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `private_key_jwt`: the PEM private key (a secret) and its certificate.
    #[serde(default)]
    pub client_key: Option<Secret>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub client_certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub insecure_http: bool,
    /// Seconds of clock skew tolerated on `exp`, `iat` and `nbf`.
    #[serde(default)]
    pub leeway: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    #[serde(default)]
    pub store: StoreKind,
    #[serde(default)]
    pub redis_url: Option<RedisUrl>,
    #[serde(default)]
    pub redis_url_file: Option<PathBuf>,
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cookie_name: Option<String>,
    #[serde(default)]
    pub cookie_domain: Option<String>,
    #[serde(default)]
    pub cookie_secure: Option<bool>,
    #[serde(default, deserialize_with = "one_or_more_secrets")]
    pub keys: Option<Vec<Secret>>,
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub cache_ttl: Option<HumanDuration>,
    #[serde(default)]
    pub refresh_interval: Option<HumanDuration>,
    #[serde(default)]
    pub memory_max_sessions: Option<u64>,
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
    #[serde(default)]
    pub max_sessions_per_user: Option<u32>,
}

/// `session.redis_url`: one URL (a node, or `redis+sentinel://`), or a list
/// of Redis Cluster nodes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RedisUrl {
    One(Secret),
    Cluster(Vec<Secret>),
}

/// Names of the identity headers sent back to the proxy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub user: String,
    pub email: String,
    pub name: String,
    pub groups: String,
    pub role: String,
    pub subject: String,
    pub groups_separator: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: "Remote-User".into(),
            email: "Remote-Email".into(),
            name: "Remote-Name".into(),
            groups: "Remote-Groups".into(),
            role: "Remote-Role".into(),
            subject: "Remote-Subject".into(),
            groups_separator: ",".into(),
        }
    }
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub public_url: Url,
    pub allowed_redirect_domains: Vec<String>,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    pub debug_explain: bool,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// How long a client connection may go without sending a whole
    /// request head (slow senders, idle keep-alive connections).
    pub header_timeout: Duration,
    /// Threads that serve requests; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// A separate address for `/metrics`; `None` serves it on `listen`.
    pub metrics_listen: Option<String>,
    /// The only peers the verify endpoints answer; empty: any peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub headers: HeaderNames,
    pub identity: IdentityConfig,
    pub role_map: Vec<RoleMapEntry>,
    pub default_policy: DefaultPolicy,
    pub policy: Vec<PolicyRule>,
    pub upstream_headers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, UpstreamHeaderValue>>,
    pub graph: crate::graph::GraphConfig,
}

/// How portcullis authenticates itself at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic` (or `client_secret_post` when the provider
    /// supports only that), with `oidc.client_secret`.
    #[default]
    ClientSecret,
    /// RFC 7523 client assertions signed with `oidc.client_key`, naming
    /// `oidc.client_certificate` (see [`crate::assertion`]).
    PrivateKeyJwt,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer exactly as written: `iss` must match it to the letter.
    pub issuer: String,
    pub client_id: String,
    /// Empty with `private_key_jwt`.
    pub client_secret: Secret,
    /// Set with `client_auth = "private_key_jwt"`: checked at start.
    pub client_key: Option<std::sync::Arc<crate::assertion::ClientKey>>,
    pub scopes: Vec<String>,
    pub insecure_http: bool,
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreKind,
    /// One URL (a node or `redis+sentinel://`) or several cluster nodes.
    pub redis_urls: Vec<Secret>,
    pub redis_ca_file: Option<PathBuf>,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub cookie_secure: bool,
    /// Raw 32-byte keys; the first seals new cookies, all are accepted.
    pub keys: Vec<[u8; 32]>,
    /// True when the keys were generated at start (memory store without keys).
    pub keys_generated: bool,
    pub ttl: Duration,
    /// Sessions unused this long end (sliding); none by default.
    pub idle_timeout: Option<Duration>,
    /// How long a session read from Redis is kept in this process; `None`
    /// (with `cache_ttl = "0s"`) reads Redis on every verify.
    pub cache_ttl: Option<Duration>,
    /// Identity is read again this often when a refresh token exists, even
    /// if the access token is still valid; none by default.
    pub refresh_interval: Option<Duration>,
    pub memory_max_sessions: u64,
    /// Most bytes the sessions held in this process may take (the memory
    /// store, or the cache in front of Redis), each weighed by its size.
    pub memory_max_bytes: u64,
    /// Most sessions one person (`sub`) has at once; a new sign-in ends
    /// the oldest beyond it.
    pub max_sessions_per_user: u32,
}

impl Config {
    /// Loads defaults < `path` (if any) < environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Load(format!("file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env_provider());
        Self::from_figment(figment)
    }

    /// Loads from a TOML string (and the environment), then validates.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)).merge(env_provider()))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let figment = Figment::from(Serialized::defaults(serde_json::json!({}))).merge(figment);
        let raw: RawConfig = figment.extract().map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        Config::validate(raw)
    }

    /// Turns the raw shape into the validated configuration.
    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen = raw.listen.trim().to_string();
        if listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid("listen", format!("`{listen}` is not an address like 127.0.0.1:4180")));
        }

        if raw.public_url.is_empty() {
            return Err(ConfigError::invalid("public_url", "is required: the external base URL where /oauth2/* is reachable"));
        }
        let public_url = parse_http_url("public_url", &raw.public_url)?;
        let public_url = {
            // Normalise: no trailing slash, so `public_url + "/oauth2/callback"` is right.
            let mut u = public_url;
            let trimmed = u.path().trim_end_matches('/').to_string();
            u.set_path(&trimmed);
            u.set_query(None);
            u.set_fragment(None);
            u
        };

        let oidc = validate_oidc(raw.oidc)?;
        let session = validate_session(raw.session)?;
        let graph = raw.graph.validate(&oidc)?;

        let mut allowed = match raw.allowed_redirect_domains {
            Some(list) => {
                let mut out = Vec::new();
                for (i, d) in list.into_iter().enumerate() {
                    let d = d.trim().to_ascii_lowercase();
                    let bare = d.strip_prefix('.').unwrap_or(&d);
                    if bare.is_empty() || bare.contains(['/', ':', '@', '\\', ' ', '*']) {
                        return Err(ConfigError::invalid(
                            format!("allowed_redirect_domains[{i}]"),
                            format!("`{d}` is not a host name or a `.suffix` domain"),
                        ));
                    }
                    out.push(d);
                }
                out
            }
            None => Vec::new(),
        };
        if allowed.is_empty() {
            if let Some(host) = public_url.host_str() {
                allowed.push(host.to_ascii_lowercase());
            }
            if let Some(domain) = &session.cookie_domain {
                allowed.push(format!(".{}", domain.trim_start_matches('.')));
            }
        }

        let headers = raw.headers;
        for (key, value) in [
            ("headers.user", &headers.user),
            ("headers.email", &headers.email),
            ("headers.name", &headers.name),
            ("headers.groups", &headers.groups),
            ("headers.role", &headers.role),
            ("headers.subject", &headers.subject),
        ] {
            if hyper::header::HeaderName::from_bytes(value.as_bytes()).is_err() {
                return Err(ConfigError::invalid(key, format!("`{value}` is not a valid header name")));
            }
        }
        if headers.groups_separator.is_empty() || headers.groups_separator.chars().any(|c| c.is_control()) {
            return Err(ConfigError::invalid("headers.groups_separator", "must be non-empty printable text"));
        }

        if let Some(level) = &raw.log_level {
            if tracing_subscriber::EnvFilter::try_new(level).is_err() {
                return Err(ConfigError::invalid("log_level", format!("`{level}` is not a level or filter like `info`")));
            }
        }

        let max_connections = raw.max_connections.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(ConfigError::invalid("max_connections", "must be between 1 and 1000000"));
        }
        let header_timeout = raw.header_timeout.map_or(Duration::from_secs(10), |d| d.0);
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&header_timeout) {
            return Err(ConfigError::invalid("header_timeout", "must be between 1s and 10m"));
        }
        if raw.worker_threads.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err(ConfigError::invalid("worker_threads", "must be between 1 and 1024"));
        }
        let metrics_listen = raw.metrics_listen.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
        if let Some(m) = &metrics_listen {
            if m.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::invalid("metrics_listen", format!("`{m}` is not an address like 127.0.0.1:9180")));
            }
        }
        let mut trusted_proxies = Vec::new();
        for (i, entry) in raw.trusted_proxies.iter().enumerate() {
            let entry = entry.trim();
            let net = entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(format!("trusted_proxies[{i}]"), format!("`{entry}` is not an address or a CIDR range like 10.0.0.0/8"))
                })?;
            trusted_proxies.push(net.trunc());
        }
        let config = Config {
            metrics_listen,
            trusted_proxies,
            max_connections,
            header_timeout,
            worker_threads: raw.worker_threads,
            listen,
            public_url,
            allowed_redirect_domains: allowed,
            log_level: raw.log_level,
            log_format: raw.log_format,
            debug_explain: raw.debug_explain,
            oidc,
            session,
            headers,
            identity: raw.identity,
            role_map: raw.role_map,
            default_policy: raw.default_policy,
            policy: raw.policy,
            upstream_headers: raw.upstream_headers,
            graph,
        };
        // Compiling rules and policy here reports their errors at start-up.
        crate::identity::Mapper::new(&config)?;
        crate::policy::Policy::new(&config)?;
        Ok(config)
    }

    /// Settings that work but are risky; `check-config` prints them and
    /// the service logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.session.cookie_secure && self.public_url.scheme() == "https" {
            w.push("session.cookie_secure = false with an https public_url: the session cookie may also travel over plain http".into());
        }
        for d in &self.allowed_redirect_domains {
            if looks_like_public_suffix(d) {
                w.push(format!(
                    "allowed_redirect_domains: `{d}` looks like a public suffix: return URLs to anybody's site under it would be accepted"
                ));
            }
        }
        if self.oidc.insecure_http {
            w.push("oidc.insecure_http = true: tokens travel unencrypted between portcullis and the identity provider; use it for tests only".into());
        }
        if self.session.store == StoreKind::Memory {
            w.push("session.store = \"memory\": sessions end when portcullis restarts and are not shared; run one instance only, or use the redis store".into());
        }
        let loopback = self.listen.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if !loopback && self.trusted_proxies.is_empty() {
            w.push(format!(
                "listen = \"{}\" is not a loopback address and trusted_proxies is unset: anyone who reaches it can ask /auth/nginx and /auth/forward with headers of their choosing; set trusted_proxies to your proxies' addresses",
                self.listen
            ));
        }
        if self.debug_explain {
            w.push("debug_explain = true: /oauth2/userinfo shows every signed-in user how your rules and policy decide".into());
        }
        if self.identity.username_claims.iter().any(|c| c == "preferred_username") {
            w.push(
                "identity.username_claims includes `preferred_username`: the user name, rules on `users` and \
                 [upstream_headers.USER] trust it, so it must be unique and set only by an administrator at the identity \
                 provider (where people choose their own, list `sub` or an administrator-set claim first)"
                    .into(),
            );
        }
        if self.identity.trust_unverified_email || self.identity.allow_unverified_email {
            w.push(
                "identity.trust_unverified_email/allow_unverified_email: an email the provider does not say is verified \
                 becomes the user name, matches rules and is sent to the apps; anyone who can sign up with somebody \
                 else's address becomes that person"
                    .into(),
            );
        }
        w
    }

    /// The redirect URI registered at the identity provider.
    pub fn callback_url(&self) -> Url {
        self.endpoint_url("/oauth2/callback")
    }

    /// `public_url` joined with an absolute path such as `/oauth2/start`.
    pub fn endpoint_url(&self, path: &str) -> Url {
        let mut u = self.public_url.clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}{path}"));
        u
    }

    /// The effective configuration with secrets redacted, for `check-config`.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::json!({
            "listen": self.listen,
            "public_url": self.public_url.as_str(),
            "allowed_redirect_domains": self.allowed_redirect_domains,
            "log_level": self.log_level,
            "log_format": self.log_format,
            "debug_explain": self.debug_explain,
            "max_connections": self.max_connections,
            "header_timeout": humantime::format_duration(self.header_timeout).to_string(),
            "worker_threads": self.worker_threads,
            "metrics_listen": self.metrics_listen,
            "trusted_proxies": self.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "oidc": {
                "issuer": self.oidc.issuer,
                "client_id": self.oidc.client_id,
                "client_secret": if self.oidc.client_secret.is_empty() { "" } else { "[redacted]" },
                "client_auth": if self.oidc.client_key.is_some() { ClientAuth::PrivateKeyJwt } else { ClientAuth::ClientSecret },
                "client_key": self.oidc.client_key.as_ref().map(|_| "[redacted]"),
                "client_certificate": self.oidc.client_key.as_ref().map(|k| serde_json::json!({
                    "x5t#S256": k.thumbprint(),
                    "not_after": humantime::format_rfc3339_seconds(k.not_after()).to_string(),
                })),
                "scopes": self.oidc.scopes,
                "insecure_http": self.oidc.insecure_http,
                "leeway": humantime::format_duration(self.oidc.leeway).to_string(),
            },
            "session": {
                "store": self.session.store,
                "redis_url": match self.session.redis_urls.len() {
                    0 => serde_json::Value::Null,
                    1 => serde_json::json!("[redacted]"),
                    n => serde_json::json!(vec!["[redacted]"; n]),
                },
                "redis_ca_file": self.session.redis_ca_file,
                "cookie_name": self.session.cookie_name,
                "cookie_domain": self.session.cookie_domain,
                "cookie_secure": self.session.cookie_secure,
                "keys": if self.session.keys_generated {
                    serde_json::json!("[generated at start]")
                } else {
                    serde_json::json!(vec!["[redacted]"; self.session.keys.len()])
                },
                "ttl": humantime::format_duration(self.session.ttl).to_string(),
                "idle_timeout": self.session.idle_timeout.map(|d| humantime::format_duration(d).to_string()),
                "cache_ttl": humantime::format_duration(self.session.cache_ttl.unwrap_or_default()).to_string(),
                "refresh_interval": self.session.refresh_interval.map(|d| humantime::format_duration(d).to_string()),
                "memory_max_sessions": self.session.memory_max_sessions,
                "memory_max_bytes": self.session.memory_max_bytes,
                "max_sessions_per_user": self.session.max_sessions_per_user,
            },
            "headers": self.headers,
            "identity": self.identity,
            "role_map": self.role_map,
            "default_policy": self.default_policy,
            "policy": self.policy,
            "upstream_headers": self.upstream_headers,
            // `Secret` serialises as "[redacted]".
            "graph": self.graph,
        })
    }
}

/// A rough public-suffix test for a `.suffix` entry: a bare top-level
/// domain (`.com`), or a generic second level under a country code
/// (`.co.uk`, `.com.au`). Not the full Public Suffix List.
fn looks_like_public_suffix(entry: &str) -> bool {
    let bare = entry.trim_start_matches('.');
    let labels: Vec<&str> = bare.split('.').collect();
    match labels.as_slice() {
        [_tld] => true,
        [second, cc] => cc.len() == 2 && ["co", "com", "org", "net", "gov", "ac", "edu", "ne", "or"].contains(second),
        _ => false,
    }
}

fn env() -> Env {
    // PORTCULLIS_CONFIG names the file; it is not a configuration key.
    Env::prefixed("PORTCULLIS_").split("__").ignore(&["config"])
}

/// The environment as a configuration source. Figment reads a value like
/// TOML (`0123` as the number 123, `1.50` as 1.5, `true` as a boolean),
/// which would change a secret; a secret key's value is taken as the text
/// it is (`session.keys` and `session.redis_url` may also be lists: `[a, b]`).
fn env_provider() -> EnvProvider {
    EnvProvider(env())
}

struct EnvProvider(Env);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};
        fn merge(into: &mut Dict, from: Dict) {
            for (k, v) in from {
                match (into.get_mut(&k), v) {
                    (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge(a, b),
                    (_, v) => {
                        into.insert(k, v);
                    }
                }
            }
        }
        let mut dict = Dict::new();
        for (key, text) in self.0.iter() {
            // `session.keys` and `session.redis_url` may be lists.
            let list = ["keys", "redis_url"].iter().any(|k| key.as_str().rsplit('.').next() == Some(*k))
                && text.trim_start().starts_with('[');
            let raw = secret_path(key.as_str().split('.')) && !list;
            let value = if raw { Value::from(text) } else { text.parse().expect("infallible") };
            if let Value::Dict(_, nested) = figment::util::nest(key.as_str(), value) {
                merge(&mut dict, nested);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// True when a key path leads to a secret (or an upstream credential):
/// its value is taken as written and never shown in an error.
fn secret_path<'a>(mut path: impl Iterator<Item = &'a str>) -> bool {
    let mut first = true;
    path.any(|segment| {
        let s = segment.to_ascii_lowercase();
        let upstream = std::mem::take(&mut first) && s == "upstream_headers";
        upstream
            || !s.ends_with("_file")
                && (s == "keys" || s == "redis_url" || s.contains("secret") || s.contains("password") || s.contains("private_key"))
    })
}

fn describe_figment_error(e: figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e {
        let key = if err.path.is_empty() { String::new() } else { format!("key `{}`: ", err.path.join(".")) };
        let source = match &err.metadata {
            Some(md) => match &md.source {
                Some(src) => format!(" (from {src})"),
                None => format!(" (from {})", md.name),
            },
            None => String::new(),
        };
        let kind = if secret_path(err.path.iter().map(String::as_str)) {
            describe_without_value(&err.kind, err.path.first().is_some_and(|p| p == "upstream_headers"))
        } else {
            without_source_lines(&err.kind.to_string())
        };
        parts.push(format!("{key}{kind}{source}"));
    }
    parts.join("; ")
}

/// What is wrong with a secret key's value, without the value.
fn describe_without_value(kind: &figment::error::Kind, upstream: bool) -> String {
    use figment::error::{Actual, Kind};
    let what = |a: &Actual| match a {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "a number",
        Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another type",
    };
    let hint = if upstream {
        "; write { file = \"/path/to/it\" } or { env = \"VARIABLE\" }: a credential's value is never written in the configuration"
    } else {
        ""
    };
    let text = match kind {
        Kind::InvalidType(actual, expected) => format!("invalid type: found {}, expected {expected}", what(actual)),
        Kind::InvalidValue(actual, expected) => format!("invalid value: found {}, expected {expected}", what(actual)),
        Kind::UnknownVariant(_, expected) if upstream => format!("expected a table with one of {}", expected.join(", ")),
        Kind::UnknownVariant(..) => "unknown variant".to_string(),
        Kind::InvalidLength(..) | Kind::UnknownField(..) | Kind::MissingField(_) | Kind::DuplicateField(_) => kind.to_string(),
        // Messages that name what was expected, never the value given:
        // this module's own and serde's for untagged enums.
        Kind::Message(m) if m.starts_with("expected ") => m.clone(),
        Kind::Message(m) if m.starts_with("data did not match any variant") => "expected a string or a list of strings".into(),
        _ => "is not valid here (the value is not shown: it may be a secret)".to_string(),
    };
    format!("{text}{hint} (the value is not shown)")
}

/// A parse error without the lines of the file it quotes: the line at
/// fault may hold a secret. The line and column numbers stay.
fn without_source_lines(text: &str) -> String {
    let quoted = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|') || t.split_once('|').is_some_and(|(n, _)| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    if !text.lines().any(quoted) {
        return text.to_string();
    }
    text.lines().filter(|l| !quoted(l) && !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

fn parse_http_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::invalid(key, format!("`{value}` is not a URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::invalid(key, format!("`{value}` must be an http or https URL")));
    }
    if url.host_str().is_none() {
        return Err(ConfigError::invalid(key, format!("`{value}` has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(key, "must not contain a user name or password"));
    }
    Ok(url)
}

/// Reads a secret given inline or as a `*_file` path; exactly one may be set.
pub(crate) fn read_secret(key: &str, inline: Option<Secret>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(key, format!("set either `{key}` or `{key}_file`, not both"))),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::invalid(format!("{key}_file"), format!("cannot read {}: {e}", path.display())))?;
            Ok(Some(Secret::new(text.trim().to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// The client secret, or with `private_key_jwt` the key and certificate,
/// read and checked (they must belong together).
fn client_credentials(
    raw: &RawOidc,
) -> Result<(Secret, Option<std::sync::Arc<crate::assertion::ClientKey>>), ConfigError> {
    let secret = read_secret("oidc.client_secret", raw.client_secret.clone(), raw.client_secret_file.as_deref())?
        .filter(|s| !s.is_empty());
    // The key's and certificate's names as the user wrote them.
    let key_name = if raw.client_key_file.is_some() { "oidc.client_key_file" } else { "oidc.client_key" };
    let cert_name =
        if raw.client_certificate_file.is_some() { "oidc.client_certificate_file" } else { "oidc.client_certificate" };
    let key = read_secret("oidc.client_key", raw.client_key.clone(), raw.client_key_file.as_deref())?
        .filter(|s| !s.is_empty());
    let certificate = read_secret(
        "oidc.client_certificate",
        raw.client_certificate.clone().map(Secret::new),
        raw.client_certificate_file.as_deref(),
    )?
    .filter(|s| !s.is_empty());
    match raw.client_auth {
        ClientAuth::ClientSecret => {
            if key.is_some() || certificate.is_some() {
                let name = if key.is_some() { key_name } else { cert_name };
                return Err(ConfigError::invalid(name, "is used only with oidc.client_auth = \"private_key_jwt\"; set that too"));
            }
            let secret = secret.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_secret",
                    "is required (or oidc.client_secret_file, or a certificate with oidc.client_auth = \"private_key_jwt\")",
                )
            })?;
            Ok((secret, None))
        }
        ClientAuth::PrivateKeyJwt => {
            if secret.is_some() {
                return Err(ConfigError::invalid(
                    "oidc.client_secret",
                    "is not used with oidc.client_auth = \"private_key_jwt\" (the certificate authenticates portcullis); remove it",
                ));
            }
            let key = key.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_key",
                    "is required with oidc.client_auth = \"private_key_jwt\" (or oidc.client_key_file): the PEM private key of the certificate registered for the client",
                )
            })?;
            let certificate = certificate.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_certificate",
                    "is required with oidc.client_auth = \"private_key_jwt\" (or oidc.client_certificate_file): the PEM certificate registered for the client",
                )
            })?;
            let client_key = crate::assertion::ClientKey::from_pem(key.expose(), certificate.expose()).map_err(|e| match e {
                crate::assertion::KeyError::Key(reason) => ConfigError::invalid(key_name, reason),
                crate::assertion::KeyError::Certificate(reason) => ConfigError::invalid(cert_name, reason),
            })?;
            Ok((Secret::default(), Some(std::sync::Arc::new(client_key))))
        }
    }
}

fn validate_oidc(raw: RawOidc) -> Result<OidcConfig, ConfigError> {
    if raw.issuer.is_empty() {
        return Err(ConfigError::invalid("oidc.issuer", "is required: the identity provider's issuer URL"));
    }
    let issuer = parse_http_url("oidc.issuer", &raw.issuer)?;
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(ConfigError::invalid("oidc.issuer", "must not have a query or fragment"));
    }
    if issuer.scheme() == "http" && !raw.insecure_http {
        return Err(ConfigError::invalid(
            "oidc.issuer",
            format!("`{}` is plain http; use https, or set oidc.insecure_http = true for a test provider", raw.issuer),
        ));
    }
    if raw.client_id.trim().is_empty() {
        return Err(ConfigError::invalid("oidc.client_id", "is required"));
    }
    let (client_secret, client_key) = client_credentials(&raw)?;
    let scopes = raw.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::invalid("oidc.scopes", "must include `openid`"));
    }
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control())) {
        return Err(ConfigError::invalid("oidc.scopes", format!("`{bad}` is not a scope")));
    }
    let leeway = raw.leeway.map(|d| d.0).unwrap_or(Duration::from_secs(60));
    if leeway > Duration::from_secs(600) {
        return Err(ConfigError::invalid("oidc.leeway", "must be at most 10m"));
    }
    Ok(OidcConfig {
        issuer: raw.issuer.trim().to_string(),
        client_id: raw.client_id.trim().to_string(),
        client_secret,
        client_key,
        scopes,
        insecure_http: raw.insecure_http,
        leeway,
    })
}

fn validate_session(raw: RawSession) -> Result<SessionConfig, ConfigError> {
    let redis_urls: Vec<Secret> = match (raw.redis_url, raw.redis_url_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid("session.redis_url", "set either `session.redis_url` or `session.redis_url_file`, not both"));
        }
        (Some(RedisUrl::One(u)), None) => vec![u],
        (Some(RedisUrl::Cluster(list)), None) => list,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::invalid("session.redis_url_file", format!("cannot read {}: {e}", path.display())))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Secret::new)
            .collect(),
        (None, None) => Vec::new(),
    };
    if let Some(path) = &raw.redis_ca_file {
        if std::fs::metadata(path).is_err() {
            return Err(ConfigError::invalid("session.redis_ca_file", format!("cannot read {}", path.display())));
        }
    }
    if raw.store == StoreKind::Redis {
        if redis_urls.is_empty() {
            return Err(ConfigError::invalid("session.redis_url", "is required when session.store = \"redis\""));
        }
        // Never echo a URL: it may carry a password.
        for (i, url) in redis_urls.iter().enumerate() {
            let key = if redis_urls.len() == 1 { "session.redis_url".to_string() } else { format!("session.redis_url[{i}]") };
            let u = url.expose();
            let ok = if u.starts_with("redis+sentinel://") || u.starts_with("rediss+sentinel://") {
                redis_urls.len() == 1
            } else {
                redis::Client::open(u).is_ok()
            };
            if !ok {
                return Err(ConfigError::invalid(
                    key,
                    "is not a Redis URL like redis://127.0.0.1:6379/0, rediss://…, or redis+sentinel://host:26379/service",
                ));
            }
        }
    }

    let cookie_name = raw.cookie_name.unwrap_or_else(|| "_portcullis".into());
    if cookie_name.is_empty()
        || !cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(ConfigError::invalid("session.cookie_name", format!("`{cookie_name}` is not a valid cookie name")));
    }
    let cookie_domain = match raw.cookie_domain.map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase()) {
        Some(d) if d.is_empty() => None,
        Some(d) => {
            if !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') || !d.contains('.') {
                return Err(ConfigError::invalid("session.cookie_domain", format!("`{d}` is not a domain like example.com")));
            }
            Some(d)
        }
        None => None,
    };
    // Browsers drop a cookie whose name promises what its attributes do not.
    let cookie_secure = raw.cookie_secure.unwrap_or(true);
    if cookie_name.starts_with("__Host-") && cookie_domain.is_some() {
        return Err(ConfigError::invalid(
            "session.cookie_domain",
            format!("cannot be set with the `__Host-` cookie name `{cookie_name}` (browsers refuse a __Host- cookie with a Domain)"),
        ));
    }
    if (cookie_name.starts_with("__Host-") || cookie_name.starts_with("__Secure-")) && !cookie_secure {
        return Err(ConfigError::invalid(
            "session.cookie_secure",
            format!("cannot be false with the cookie name `{cookie_name}` (browsers refuse a __Host- or __Secure- cookie without Secure)"),
        ));
    }

    let keys_text: Option<Vec<Secret>> = match (raw.keys, raw.keys_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid("session.keys", "set either `session.keys` or `session.keys_file`, not both"));
        }
        (Some(k), None) => Some(k),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid("session.keys_file", format!("cannot read {}: {e}", path.display()))
            })?;
            Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new)
                    .collect(),
            )
        }
        (None, None) => None,
    };
    let mut keys = Vec::new();
    for (i, k) in keys_text.unwrap_or_default().iter().enumerate() {
        keys.push(decode_key(k.expose()).map_err(|reason| ConfigError::invalid(format!("session.keys[{i}]"), reason))?);
    }
    let keys_generated = keys.is_empty();
    if keys_generated {
        if raw.store == StoreKind::Redis {
            return Err(ConfigError::invalid(
                "session.keys",
                "is required with the redis store (generate one with `openssl rand -base64 32`)",
            ));
        }
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        keys.push(key);
    }

    let ttl = raw.ttl.map(|d| d.0).unwrap_or(Duration::from_secs(12 * 3600));
    if ttl < Duration::from_secs(60) {
        return Err(ConfigError::invalid("session.ttl", "must be at least 1m"));
    }
    let idle_timeout = raw.idle_timeout.map(|d| d.0);
    if idle_timeout.is_some_and(|d| d < Duration::from_secs(60) || d > ttl) {
        return Err(ConfigError::invalid("session.idle_timeout", "must be between 1m and session.ttl"));
    }
    let cache_ttl = raw.cache_ttl.map(|d| d.0).unwrap_or(Duration::from_secs(2));
    if cache_ttl > Duration::from_secs(60) {
        return Err(ConfigError::invalid(
            "session.cache_ttl",
            "must be at most 1m: a logout on another instance takes this long to apply here",
        ));
    }
    let cache_ttl = (!cache_ttl.is_zero()).then_some(cache_ttl);
    let refresh_interval = raw.refresh_interval.map(|d| d.0);
    if refresh_interval.is_some_and(|d| d < Duration::from_secs(10)) {
        return Err(ConfigError::invalid("session.refresh_interval", "must be at least 10s"));
    }
    let memory_max_sessions = raw.memory_max_sessions.unwrap_or(100_000);
    if memory_max_sessions == 0 {
        return Err(ConfigError::invalid("session.memory_max_sessions", "must be at least 1"));
    }
    let memory_max_bytes = raw.memory_max_bytes.unwrap_or(256 << 20);
    if memory_max_bytes < 1 << 20 {
        return Err(ConfigError::invalid("session.memory_max_bytes", "must be at least 1048576 (1 MiB)"));
    }
    let max_sessions_per_user = raw.max_sessions_per_user.unwrap_or(20);
    if max_sessions_per_user == 0 {
        return Err(ConfigError::invalid("session.max_sessions_per_user", "must be at least 1"));
    }
    Ok(SessionConfig {
        store: raw.store,
        redis_urls,
        redis_ca_file: raw.redis_ca_file,
        cookie_name,
        cookie_domain,
        cookie_secure,
        keys,
        keys_generated,
        ttl,
        idle_timeout,
        cache_ttl,
        refresh_interval,
        memory_max_sessions,
        memory_max_bytes,
        max_sessions_per_user,
    })
}

/// Decodes a base64 (standard or URL-safe, padded or not) key of 32 bytes.
fn decode_key(text: &str) -> Result<[u8; 32], String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| "is not base64 (generate one with `openssl rand -base64 32`)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("decodes to {} bytes; a key must be exactly 32 bytes", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn base() -> String {
        r#"
public_url = "https://auth.example.com"
[oidc]
issuer = "https://id.example.com"
client_id = "portcullis"
client_secret = "s3cret"
"#
        .to_string()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml_str(&base()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:4180");
        assert_eq!(c.session.cookie_name, "_portcullis");
        assert!(c.session.cookie_secure);
        assert_eq!(c.session.ttl, Duration::from_secs(43200));
        assert_eq!(c.oidc.scopes, vec!["openid", "profile", "email"]);
        assert_eq!(c.allowed_redirect_domains, vec!["auth.example.com"]);
        assert_eq!(c.headers.user, "Remote-User");
        assert!(c.session.keys_generated);
        assert_eq!(c.callback_url().as_str(), "https://auth.example.com/oauth2/callback");
    }

    #[test]
    fn http_issuer_needs_insecure_http() {
        let toml = base().replace("https://id.example.com", "http://id.example.com");
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("oidc.issuer"), "{err}");
        assert!(err.contains("insecure_http"), "{err}");
        let toml = toml.replace("client_secret = \"s3cret\"", "client_secret = \"s3cret\"\ninsecure_http = true");
        Config::from_toml_str(&toml).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let toml = format!("{}\n[session]\ncookie_nme = \"x\"\n", base());
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("cookie_nme"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let toml = format!("{}\n[session]\nttl = \"forever\"\n", base());
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("session.ttl") && err.contains("forever"), "{err}");
    }

    #[test]
    fn worker_threads_is_bounded() {
        assert_eq!(Config::from_toml_str(&base()).unwrap().worker_threads, None);
        assert_eq!(Config::from_toml_str(&format!("worker_threads = 1\n{}", base())).unwrap().worker_threads, Some(1));
        let err = Config::from_toml_str(&format!("worker_threads = 0\n{}", base())).unwrap_err().to_string();
        assert!(err.contains("`worker_threads`"), "{err}");
    }

    #[test]
    fn header_timeout_is_bounded() {
        assert_eq!(Config::from_toml_str(&base()).unwrap().header_timeout, Duration::from_secs(10));
        for value in ["0s", "11m"] {
            let err = Config::from_toml_str(&format!("header_timeout = \"{value}\"\n{}", base())).unwrap_err().to_string();
            assert!(err.contains("`header_timeout`") && err.contains("between 1s and 10m"), "{err}");
        }
    }

    #[test]
    fn redis_store_requires_keys_and_url() {
        let toml = format!("{}\n[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1/\"\n", base());
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("session.keys"), "{err}");
        let toml = format!("{}\n[session]\nstore = \"redis\"\nkeys = [\"{KEY}\"]\n", base());
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("session.redis_url"), "{err}");
    }

    #[test]
    fn short_key_is_refused_without_echoing_it() {
        let toml = format!("{}\n[session]\nkeys = [\"c2hvcnQ=\"]\n", base());
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("session.keys[0]") && err.contains("32 bytes"), "{err}");
        assert!(!err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn secret_file_is_read_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let toml = base().replace("client_secret = \"s3cret\"", &format!("client_secret_file = {:?}", path));
        let c = Config::from_toml_str(&toml).unwrap();
        assert_eq!(c.oidc.client_secret.expose(), "from-file");
        let shown = c.redacted().to_string();
        assert!(!shown.contains("from-file"), "{shown}");
        assert!(!format!("{c:?}").contains("from-file"));
    }

    #[test]
    fn a_secret_from_the_environment_is_kept_as_written() {
        // A prefix no other test reads, so setting it cannot disturb them.
        let vars = [
            ("PCI15SECRETS_OIDC__CLIENT_SECRET", "0012345678"),
            ("PCI15SECRETS_GRAPH__CLIENT_SECRET", "1.50"),
            ("PCI15SECRETS_SESSION__KEYS", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            ("PCI15SECRETS_SESSION__REDIS_URL", "[redis://127.0.0.1:7001, redis://127.0.0.1:7002]"),
            ("PCI15SECRETS_SESSION__TTL", "2h"),
        ];
        for (k, v) in vars {
            // SAFETY: only this test reads or writes variables with this prefix.
            unsafe { std::env::set_var(k, v) };
        }
        let env = EnvProvider(Env::prefixed("PCI15SECRETS_").split("__"));
        let raw: RawConfig = Figment::from(Serialized::defaults(serde_json::json!({})))
            .merge(Toml::string(&base()))
            .merge(env)
            .extract()
            .unwrap();
        let c = Config::validate(raw).unwrap();
        assert_eq!(c.oidc.client_secret.expose(), "0012345678", "not the number 12345678");
        assert_eq!(c.graph.client_secret.as_ref().unwrap().expose(), "1.50", "not the number 1.5");
        assert_eq!(c.session.keys, vec![*b"0123456789abcdef0123456789abcdef"], "one key, not a list");
        assert_eq!(c.session.redis_urls.iter().map(Secret::expose).collect::<Vec<_>>(), ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]);
        assert_eq!(c.session.ttl, Duration::from_secs(7200), "other keys are read as before");
        for (k, _) in vars {
            // SAFETY: as above.
            unsafe { std::env::remove_var(k) };
        }
    }

    #[test]
    fn secret_paths() {
        let is = |p: &str| secret_path(p.split('.'));
        for p in ["oidc.client_secret", "graph.client_secret", "session.keys", "session.redis_url", "upstream_headers.family.x-api-key", "upstream_headers"] {
            assert!(is(p), "{p}");
        }
        for p in ["oidc.client_secret_file", "session.keys_file", "session.redis_url_file", "oidc.client_id", "session.ttl", "identity.rules"] {
            assert!(!is(p), "{p}");
        }
    }

    #[test]
    fn risky_settings_are_warned_about() {
        let c = Config::from_toml_str(&base()).unwrap();
        // The memory store, and preferred_username among username_claims (once).
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert_eq!(c.warnings().iter().filter(|w| w.contains("preferred_username")).count(), 1);
        let toml = format!("{}\n[identity]\nusername_claims = [\"sub\"]\n", base());
        assert_eq!(Config::from_toml_str(&toml).unwrap().warnings().len(), 1);
        let toml = format!("{}\n[identity]\ntrust_unverified_email = true\n", base());
        let w = Config::from_toml_str(&toml).unwrap().warnings().join("\n");
        assert!(w.contains("trust_unverified_email") && w.contains("becomes that person"), "{w}");
        let toml = format!(
            "allowed_redirect_domains = [\".co.uk\", \".com\", \".example.com\"]\n{}\n[session]\ncookie_secure = false\n",
            base()
        );
        let w = Config::from_toml_str(&toml).unwrap().warnings().join("\n");
        assert!(w.contains("cookie_secure"), "{w}");
        assert!(w.contains("`.co.uk` looks like a public suffix") && w.contains("`.com` looks like"), "{w}");
        assert!(!w.contains("`.example.com`"), "{w}");
    }

    #[test]
    fn cookie_domain_joins_allowed_redirects() {
        let toml = format!("{}\n[session]\ncookie_domain = \".example.com\"\n", base());
        let c = Config::from_toml_str(&toml).unwrap();
        assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(c.allowed_redirect_domains, vec!["auth.example.com", ".example.com"]);
    }
}
