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

mod source;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::headers::UpstreamHeaderValue;
use crate::identity::{IdentityConfig, RoleMapEntry};
use crate::oidc::config::RawOidc;
use crate::policy::{DefaultPolicy, PolicyRule};
use crate::session::config::RawSession;
use crate::settings::parse_http_url;
use source::{describe_figment_error, env_provider};

// Each section's types live with the subsystem that owns them; these names
// are the configuration's, as the tests and tools know them.
pub use crate::headers::HeaderNames;
pub use crate::oidc::config::{ClientAuth, OidcConfig};
pub use crate::session::config::{RedisUrl, SessionConfig, StoreKind};
pub use crate::settings::{ConfigError, HumanDuration, Secret, read_secret};

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
    #[serde(default)]
    pub api: crate::credentials::RawApi,
    #[serde(default)]
    pub ui: crate::ui::RawUi,
}

fn default_listen() -> String {
    "127.0.0.1:4180".into()
}

/// The validated configuration the service runs with.
///
/// Serialised (for `check-config`) with every secret shown as
/// `[redacted]`: each section's type says how its values are shown.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub listen: String,
    #[serde(serialize_with = "crate::settings::show::text")]
    pub public_url: Url,
    pub allowed_redirect_domains: Vec<String>,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    pub debug_explain: bool,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// How long a client connection may go without sending a whole
    /// request head (slow senders, idle keep-alive connections).
    #[serde(serialize_with = "crate::settings::show::duration")]
    pub header_timeout: Duration,
    /// Threads that serve requests; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// A separate address for `/metrics`; `None` serves it on `listen`.
    pub metrics_listen: Option<String>,
    /// The only peers the verify endpoints answer; empty: any peer.
    #[serde(serialize_with = "crate::settings::show::texts")]
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
    pub api: crate::credentials::ApiConfig,
    /// The look of portcullis's own pages.
    pub ui: crate::ui::UiConfig,
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

        let oidc = crate::oidc::config::validate(raw.oidc)?;
        let session = crate::session::config::validate(raw.session)?;
        let graph = raw.graph.validate(&oidc)?;
        let api = crate::credentials::config::validate(raw.api)?;
        let ui = crate::ui::config::validate(raw.ui)?;

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
        crate::headers::IdentityHeaders::new(&headers)?;

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
        let mut config = Config {
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
            api,
            ui,
        };
        // The post-logout URI in effect, shown by check-config as it is.
        let signed_out = config.endpoint_url("/oauth2/signed-out");
        config.oidc.post_logout_redirect_uri.get_or_insert(signed_out);
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
        if self.api.forward_credentials {
            w.push("api.forward_credentials = true: the apps receive the tokens people use with portcullis, and any of them could use those tokens at every other app behind it".into());
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

    /// The post-logout redirect URI registered at the identity provider:
    /// `oidc.post_logout_redirect_uri`, or `/oauth2/signed-out`.
    pub fn signed_out_url(&self) -> Url {
        self.oidc.post_logout_redirect_uri.clone().unwrap_or_else(|| self.endpoint_url("/oauth2/signed-out"))
    }

    /// Every URI to register at the identity provider, by the name the
    /// provider's client settings give it.
    pub fn provider_uris(&self) -> Vec<(&'static str, Url)> {
        vec![
            ("redirect URI (callback)", self.callback_url()),
            ("post-logout redirect URI", self.signed_out_url()),
            ("back-channel logout URI", self.endpoint_url("/oauth2/backchannel-logout")),
            ("front-channel logout URI", self.endpoint_url("/oauth2/frontchannel-logout")),
        ]
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
        serde_json::to_value(self).expect("the configuration serialises")
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

#[cfg(test)]
mod tests {
    use super::*;
    use super::source::{EnvProvider, secret_path};

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
        let toml = format!("{}\n[api]\nforward_credentials = true\n", base());
        let w = Config::from_toml_str(&toml).unwrap().warnings().join("\n");
        assert!(w.contains("api.forward_credentials"), "{w}");
    }

    #[test]
    fn cookie_domain_joins_allowed_redirects() {
        let toml = format!("{}\n[session]\ncookie_domain = \".example.com\"\n", base());
        let c = Config::from_toml_str(&toml).unwrap();
        assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(c.allowed_redirect_domains, vec!["auth.example.com", ".example.com"]);
    }
}
