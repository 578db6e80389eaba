//! `[session]`: where sessions live, their cookie, keys and lifetimes.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, HumanDuration, Secret, one_or_more_secrets};

/// Which session store to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
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

#[derive(Debug, Clone, Serialize)]
pub struct SessionConfig {
    pub store: StoreKind,
    /// One URL (a node or `redis+sentinel://`) or several cluster nodes.
    #[serde(rename = "redis_url")]
    pub redis_urls: Vec<Secret>,
    pub redis_ca_file: Option<PathBuf>,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub cookie_secure: bool,
    /// Raw 32-byte keys; the first seals new cookies, all are accepted.
    #[serde(serialize_with = "crate::settings::show::redacted_all")]
    pub keys: Vec<[u8; 32]>,
    /// True when the keys were generated at start (memory store without keys).
    pub keys_generated: bool,
    #[serde(serialize_with = "crate::settings::show::duration")]
    pub ttl: Duration,
    /// Sessions unused this long end (sliding); none by default.
    #[serde(serialize_with = "crate::settings::show::duration_opt")]
    pub idle_timeout: Option<Duration>,
    /// How long a session read from Redis is kept in this process; `None`
    /// (with `cache_ttl = "0s"`) reads Redis on every verify.
    #[serde(serialize_with = "crate::settings::show::duration_opt")]
    pub cache_ttl: Option<Duration>,
    /// Identity is read again this often when a refresh token exists, even
    /// if the access token is still valid; none by default.
    #[serde(serialize_with = "crate::settings::show::duration_opt")]
    pub refresh_interval: Option<Duration>,
    pub memory_max_sessions: u64,
    /// Most bytes the sessions held in this process may take (the memory
    /// store, or the cache in front of Redis), each weighed by its size.
    pub memory_max_bytes: u64,
    /// Most sessions one person (`sub`) has at once; a new sign-in ends
    /// the oldest beyond it. 0: no limit.
    pub max_sessions_per_user: u32,
}

/// Checks `[session]`; errors name the key.
pub fn validate(raw: RawSession) -> Result<SessionConfig, ConfigError> {
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
    // 0: no limit (and no counting at sign-in).
    let max_sessions_per_user = raw.max_sessions_per_user.unwrap_or(20);
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

