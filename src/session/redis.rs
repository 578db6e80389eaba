//! Sessions in Redis, shared by every portcullis instance that points at it.
//!
//! Three ways to reach Redis, all with a timeout on every call and
//! reconnecting by themselves:
//! - one node (`redis://`, `rediss://` for TLS): the `redis` crate's
//!   [`ConnectionManager`], created lazily;
//! - Redis Sentinel (`redis+sentinel://host:26379,host2:26379/service`):
//!   the current primary is asked of the sentinels, and asked again after
//!   any failed call, so a failover is followed within a call or two;
//! - Redis Cluster (a list of node URLs): the crate's cluster connection,
//!   which follows slot moves itself.
//!
//! Each session is one key (`portcullis:session:<hash of the ID>`) holding
//! JSON, with a Redis TTL so it expires by itself. A long list of groups
//! (an organisation's people are in dozens) is kept apart, once for every
//! session with the same groups: a person's browsers, phones and tokens,
//! and the people of one team ([`groups`]). An outage is logged once when
//! it starts and once when it ends, not per request.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, TlsCertificates, TlsMode, Value};
use tokio::sync::{Mutex, RwLock};

use super::{Index, Session, SessionStore, StoreError, StoreKey};

const PREFIX: &str = "portcullis:session:";
const INDEX_PREFIX: &str = "portcullis:index:";
const MARKER_PREFIX: &str = "portcullis:marker:";
const GROUPS_PREFIX: &str = "portcullis:groups:";

/// Where Redis is and how to talk to it.
#[derive(Clone)]
pub struct RedisOptions {
    /// One URL (a node or `redis+sentinel://`), or several cluster nodes.
    pub urls: Vec<String>,
    /// A PEM CA bundle to trust for `rediss://` instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Timeout on every call.
    pub timeout: Duration,
    /// The longest a session can live (`session.ttl`).
    pub index_ttl: Duration,
}

/// A connection of any kind, usable for commands.
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Target {
    Node(ConnectionManager),
    Cluster(redis::cluster::ClusterClient, RwLock<Option<ClusterConnection>>),
    Sentinel(Mutex<SentinelClient>, RwLock<Option<ConnectionManager>>),
}

/// Sessions in Redis.
pub struct RedisStore {
    target: Target,
    timeout: Duration,
    index_ttl: Duration,
    down: AtomicBool,
    /// Group lists read from Redis, by the hash that names them (they
    /// never change under a name).
    groups: groups::Known,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

impl RedisStore {
    /// Prepares the store; no connection is made until the first call, so
    /// portcullis starts even while Redis is down.
    pub fn new(options: &RedisOptions) -> Result<RedisStore, StoreError> {
        // Never include a URL in errors: it may carry a password.
        let invalid = |what: &str| StoreError::Unavailable(format!("invalid Redis configuration: {what}"));
        let certs = match &options.ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| invalid(&format!("cannot read {}: {e}", path.display())))?),
            }),
            None => None,
        };
        let target = match options.urls.as_slice() {
            [] => return Err(invalid("no URL")),
            [one] if one.starts_with("redis+sentinel://") || one.starts_with("rediss+sentinel://") => {
                let spec = SentinelUrl::parse(one).map_err(|e| invalid(e))?;
                Target::Sentinel(Mutex::new(spec.client(certs)?), RwLock::new(None))
            }
            [one] => {
                let client = match certs {
                    Some(c) => redis::Client::build_with_tls(one.as_str(), c),
                    None => redis::Client::open(one.as_str()),
                }
                .map_err(|_| invalid("not a Redis URL"))?;
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config(options.timeout))
                    .map_err(|e| StoreError::Unavailable(describe(&e)))?;
                Target::Node(manager)
            }
            nodes => {
                let mut builder = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(options.timeout)
                    .response_timeout(options.timeout)
                    .retries(2);
                if let Some(c) = certs {
                    builder = builder.certs(c);
                }
                Target::Cluster(builder.build().map_err(|_| invalid("not a list of Redis cluster node URLs"))?, RwLock::new(None))
            }
        };
        Ok(RedisStore {
            target,
            timeout: options.timeout,
            index_ttl: options.index_ttl,
            down: AtomicBool::new(false),
            groups: groups::Known::default(),
        })
    }

    fn redis_key(key: &StoreKey) -> String {
        let mut k = String::with_capacity(PREFIX.len() + 43);
        k.push_str(PREFIX);
        base64::Engine::encode_string(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key.0, &mut k);
        k
    }

    /// A connection, made (or, for Sentinel, looked up) when needed.
    async fn conn(&self) -> Result<Conn, StoreError> {
        match &self.target {
            Target::Node(m) => Ok(Conn::Node(m.clone())),
            Target::Cluster(client, cached) => {
                if let Some(c) = cached.read().await.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let made = self.call(client.get_async_connection()).await?;
                *cached.write().await = Some(made.clone());
                Ok(Conn::Cluster(made))
            }
            Target::Sentinel(sentinel, cached) => {
                if let Some(m) = cached.read().await.as_ref() {
                    return Ok(Conn::Node(m.clone()));
                }
                let mut sentinel = sentinel.lock().await;
                if let Some(m) = cached.read().await.as_ref() {
                    return Ok(Conn::Node(m.clone()));
                }
                let client = self.call(sentinel.async_get_client()).await?;
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config(self.timeout))
                    .map_err(|e| StoreError::Unavailable(describe(&e)))?;
                *cached.write().await = Some(manager.clone());
                Ok(Conn::Node(manager))
            }
        }
    }

    /// Runs a pipeline of writes in one round trip; on a cluster, whose
    /// keys live on different nodes, as separate commands sent at once.
    async fn run(&self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        match &mut conn {
            Conn::Node(_) => self.call(pipe.query_async::<()>(&mut conn)).await,
            Conn::Cluster(cluster) => {
                let sends = pipe.cmd_iter().map(|cmd| {
                    let mut c = cluster.clone();
                    async move { cmd.query_async::<Value>(&mut c).await.map(|_| ()) }
                });
                self.call(futures_util::future::try_join_all(sends)).await.map(|_| ())
            }
        }
    }

    /// Runs one call with the timeout, and keeps track of outages.
    async fn call<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        let metrics = crate::metrics::get();
        metrics.store_seconds.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics.store_errors.inc();
        }
        match &result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(event = "store_recovered", "redis session store is reachable again");
                }
            }
            Err(e) => {
                if let Target::Sentinel(_, cached) = &self.target {
                    // The primary may have changed: ask the sentinels again.
                    if let Ok(mut c) = cached.try_write() {
                        *c = None;
                    }
                }
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::error!(event = "store_down", error = %e, "redis session store is unreachable; verify fails closed until it returns");
                }
            }
        }
        result
    }
}

/// A `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db]`
/// URL (`rediss+sentinel://` for TLS to the sentinels and the nodes). The
/// credentials are those of the Redis nodes; sentinels are reached without.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    tls: bool,
    sentinels: Vec<(String, u16)>,
    service: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl SentinelUrl {
    fn parse(url: &str) -> Result<SentinelUrl, &'static str> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else {
            return Err("not a redis+sentinel:// URL");
        };
        let (authority, path) = rest.split_once('/').ok_or("a sentinel URL needs /service_name after the hosts")?;
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, authority),
        };
        let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| decode(u)).flatten(), decode(p)),
                None => (decode(a), None),
            },
        };
        let mut sentinels = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| "a sentinel port is not a number")?),
                None => (h, 26379),
            };
            sentinels.push((host.trim_start_matches('[').trim_end_matches(']').to_string(), port));
        }
        if sentinels.is_empty() {
            return Err("a sentinel URL needs at least one host");
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let service = parts.next().ok_or("a sentinel URL needs /service_name after the hosts")?.to_string();
        let db = match parts.next() {
            Some(d) => d.parse().map_err(|_| "the database in a sentinel URL is not a number")?,
            None => 0,
        };
        Ok(SentinelUrl { tls, sentinels, service, db, username, password })
    }

    fn client(&self, certs: Option<TlsCertificates>) -> Result<SentinelClient, StoreError> {
        let addrs = self.sentinels.iter().map(|(host, port)| {
            if self.tls {
                ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b = SentinelClientBuilder::new(addrs, &self.service, SentinelServerType::Master)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?
            .set_client_to_redis_db(self.db);
        if let Some(u) = &self.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &self.password {
            b = b.set_client_to_redis_password(p);
        }
        if self.tls {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(c) = certs {
                b = b.set_client_to_redis_certificates(c.clone()).set_client_to_sentinel_certificates(c);
            }
        }
        b.build().map_err(|e| StoreError::Unavailable(describe(&e)))
    }
}

/// Sets KEYS[1] to expire in ARGV[1] seconds unless it lives longer already.
const EXTEND_TTL: &str = "if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return 0";

/// Group lists kept apart from the sessions that have them.
///
/// A session whose groups take more than [`groups::APART`] bytes is stored
/// as `G<name>\n` and its JSON without the groups; the groups are stored
/// once under `portcullis:groups:<name>`, where the name is the SHA-256
/// of that list (base64url). Every session with the same groups (a
/// person's browsers and devices, the people of one team) shares it, so
/// Redis holds a person's fifty groups once, not once per session. The
/// list lives as long as the longest-lived session written with it (as
/// the index sets do). Sessions stored before, all JSON, are read as they
/// are.
mod groups {
    use std::sync::Arc;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    use super::{EXTEND_TTL, GROUPS_PREFIX, Session, StoreError};
    use crate::identity::IdentityParts;

    /// Groups that take more bytes than this (as JSON) are kept apart; a
    /// household's two or three stay in the session.
    pub const APART: usize = 256;
    /// Lists kept in this process (by weight: their bytes), 16 MiB.
    const KNOWN_BYTES: u64 = 16 << 20;
    /// The length of a name: base64url of 32 bytes.
    const NAME_LEN: usize = 43;

    /// A session's groups and the groups its header shows.
    #[derive(Serialize, Deserialize)]
    pub struct List {
        groups: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header_groups: Option<Vec<String>>,
        /// The JSON of the two lists, as stored, and its name.
        #[serde(skip)]
        json: Vec<u8>,
        #[serde(skip)]
        name: String,
    }

    impl List {
        /// The list read back from Redis, if it is the one `name` names.
        pub fn read(name: &str, bytes: &[u8]) -> Option<List> {
            if URL_SAFE_NO_PAD.encode(Sha256::digest(bytes)) != name {
                return None;
            }
            let mut list: List = serde_json::from_slice(bytes).ok()?;
            list.name = name.to_string();
            list.json = bytes.to_vec();
            Some(list)
        }

        /// `session` (stored without groups) with these groups back.
        pub fn restore(&self, mut session: Session) -> Session {
            let parts = IdentityParts { groups: self.groups.clone(), header_groups: self.header_groups.clone(), ..session.identity.to_parts() };
            session.identity = parts.into();
            session
        }

        /// Adds to `pipe`: store the list unless it is there, and let it
        /// live at least `secs` more.
        pub fn store(&self, pipe: &mut redis::Pipeline, secs: u64) {
            let key = redis_key(&self.name);
            pipe.cmd("SET").arg(&key).arg(&self.json).arg("NX").arg("EX").arg(secs).ignore();
            pipe.cmd("EVAL").arg(EXTEND_TTL).arg(1).arg(&key).arg(secs).ignore();
        }

        /// What is stored under the list's key.
        #[cfg(test)]
        pub fn json(&self) -> &[u8] {
            &self.json
        }

        fn weight(&self) -> u64 {
            (self.json.len() * 2 + 64) as u64
        }
    }

    pub fn redis_key(name: &str) -> String {
        format!("{GROUPS_PREFIX}{name}")
    }

    /// What Redis stores for `session`, and the group list it needs
    /// stored with it (when its groups are kept apart).
    pub fn write(session: &Session) -> Result<(Vec<u8>, Option<List>), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let identity = &session.identity;
        let size: usize = identity.groups().map(|g| g.len() + 3).sum::<usize>()
            + identity.header_groups().map_or(0, |h| h.map(|g| g.len() + 3).sum());
        if size <= APART {
            return Ok((serde_json::to_vec(session).map_err(corrupt)?, None));
        }
        let parts = identity.to_parts();
        let mut list = List { groups: parts.groups.clone(), header_groups: parts.header_groups.clone(), json: Vec::new(), name: String::new() };
        list.json = serde_json::to_vec(&list).map_err(corrupt)?;
        list.name = URL_SAFE_NO_PAD.encode(Sha256::digest(&list.json));
        let mut without = session.clone();
        without.identity = IdentityParts { groups: Vec::new(), header_groups: None, ..parts }.into();
        let mut bytes = Vec::with_capacity(2 + NAME_LEN + 256);
        bytes.push(b'G');
        bytes.extend_from_slice(list.name.as_bytes());
        bytes.push(b'\n');
        serde_json::to_writer(&mut bytes, &without).map_err(corrupt)?;
        Ok((bytes, Some(list)))
    }

    /// A stored session whose groups are kept apart: the list's name and
    /// the session's JSON. `None` for a session stored whole (JSON).
    pub fn split(bytes: &[u8]) -> Option<(&str, &[u8])> {
        let rest = bytes.strip_prefix(b"G")?;
        let (name, json) = (rest.get(..NAME_LEN)?, rest.get(NAME_LEN + 1..)?);
        (rest.get(NAME_LEN) == Some(&b'\n')).then_some(())?;
        Some((std::str::from_utf8(name).ok()?, json))
    }

    /// Group lists already read, by name.
    pub struct Known(quick_cache::sync::Cache<String, Arc<List>, ByWeight>);

    #[derive(Clone)]
    pub struct ByWeight;

    impl quick_cache::Weighter<String, Arc<List>> for ByWeight {
        fn weight(&self, _key: &String, list: &Arc<List>) -> u64 {
            list.weight()
        }
    }

    impl Default for Known {
        fn default() -> Known {
            Known(quick_cache::sync::Cache::with(4096, KNOWN_BYTES, ByWeight, Default::default(), Default::default()))
        }
    }

    impl Known {
        pub fn get(&self, name: &str) -> Option<Arc<List>> {
            self.0.get(name)
        }

        pub fn insert(&self, name: &str, list: List) -> Arc<List> {
            let list = Arc::new(list);
            self.0.insert(name.to_string(), Arc::clone(&list));
            list
        }
    }
}

fn index_key(index: &Index) -> String {
    format!("{INDEX_PREFIX}{}", index.key())
}

/// A Redis error as text, without anything the URL might have carried.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", e.kind())
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Option<Vec<u8>> = self.call(conn.get(Self::redis_key(key))).await?;
        let Some(bytes) = raw else { return Ok(None) };
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let Some((name, json)) = groups::split(&bytes) else {
            return serde_json::from_slice::<Session>(&bytes).map(|s| Some(Arc::new(s))).map_err(corrupt);
        };
        let session = serde_json::from_slice::<Session>(json).map_err(corrupt)?;
        let list = match self.groups.get(name) {
            Some(list) => list,
            None => {
                let stored: Option<Vec<u8>> = self.call(conn.get(groups::redis_key(name))).await?;
                let Some(list) = stored.and_then(|b| groups::List::read(name, &b)) else {
                    // Gone (Redis evicted it under maxmemory) or not what
                    // its name says: the session cannot be used; its
                    // holder signs in again.
                    tracing::warn!(event = "session_groups_missing", "a session's group list is missing from Redis; the session is ended");
                    return Ok(None);
                };
                self.groups.insert(name, list)
            }
        };
        Ok(Some(Arc::new(list.restore(session))))
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        let secs = ttl.as_secs().max(1);
        // One round trip: the group list (when kept apart), the session,
        // then its index entries. An index set, and a group list, lives a
        // full session lifetime past its latest write, or as long as its
        // longest-lived member (a personal access token), so it outlives
        // every record in it; stale index members are dropped when found.
        let index_secs = self.index_ttl.as_secs().max(secs);
        let (bytes, list) = groups::write(&session)?;
        let mut pipe = redis::pipe();
        if let Some(list) = &list {
            list.store(&mut pipe, index_secs);
            if matches!(self.target, Target::Cluster(..)) {
                // A cluster's commands go at once to different nodes:
                // the list first, so no session is read without it.
                self.run(&std::mem::take(&mut pipe)).await?;
            }
        }
        pipe.set_ex(Self::redis_key(key), bytes, secs).ignore();
        for index in session.indexes() {
            let name = index_key(&index);
            pipe.sadd(&name, key.text()).ignore();
            // Never shortened (EXPIRE's GT needs Redis 7; this works on any).
            pipe.cmd("EVAL").arg(EXTEND_TTL).arg(1).arg(&name).arg(index_secs).ignore();
        }
        self.run(&pipe).await
    }

    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
        let secs = ttl.as_secs().max(1);
        let (bytes, list) = groups::write(&session)?;
        if let Some(list) = &list {
            // A refresh may have brought other groups.
            let mut pipe = redis::pipe();
            list.store(&mut pipe, self.index_ttl.as_secs().max(secs));
            self.run(&pipe).await?;
        }
        let mut conn = self.conn().await?;
        let set: Option<String> = self
            .call(redis::cmd("SET").arg(Self::redis_key(key)).arg(bytes).arg("XX").arg("EX").arg(secs).query_async(&mut conn))
            .await?;
        Ok(set.is_some())
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let session = self.get(key).await.ok().flatten();
        let mut pipe = redis::pipe();
        pipe.del(Self::redis_key(key)).ignore();
        for index in session.iter().flat_map(|s| s.indexes()) {
            pipe.srem(index_key(&index), key.text()).ignore();
        }
        self.run(&pipe).await
    }

    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError> {
        let name = index_key(index);
        let mut conn = self.conn().await?;
        let members: Vec<String> = self.call(conn.smembers(&name)).await?;
        let mut found = Vec::new();
        let mut stale = Vec::new();
        for member in members {
            let Some(key) = StoreKey::from_text(&member) else {
                stale.push(member);
                continue;
            };
            match self.get(&key).await? {
                Some(session) if session.is_filed_under(index) => found.push((key, session)),
                _ => stale.push(member),
            }
        }
        if !stale.is_empty() {
            let _: Result<(), _> = self.call(conn.srem(&name, stale)).await;
        }
        Ok(found)
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let ms = ttl.as_millis().max(1) as u64;
        let set: Option<String> = self
            .call(redis::cmd("SET").arg(format!("{MARKER_PREFIX}{name}")).arg(1).arg("NX").arg("PX").arg(ms).query_async(&mut conn))
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        self.call(conn.del::<_, ()>(format!("{MARKER_PREFIX}{name}"))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        self.call(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_groups(groups: Vec<String>, header_groups: Option<Vec<String>>) -> Session {
        let mut s = crate::session::test_session("alice");
        s.identity = crate::identity::IdentityParts { groups, header_groups, ..s.identity.to_parts() }.into();
        s.sid = Some("sid-1".into());
        s
    }

    #[test]
    fn a_long_group_list_is_written_apart_and_read_back_whole() {
        let many: Vec<String> = (0..50).map(|i| format!("{:x<30}", format!("team-{i:02}-"))).collect();
        let names: Vec<String> = (0..50).map(|i| format!("Team {i}")).collect();
        for header_groups in [None, Some(names)] {
            let session = with_groups(many.clone(), header_groups);
            let (bytes, list) = groups::write(&session).unwrap();
            let list = list.expect("kept apart");
            let (name, json) = groups::split(&bytes).expect("names its list");
            assert!(!String::from_utf8_lossy(json).contains("team-07"));
            // What Redis holds under the list's key reads back only under its name.
            let stored = list.json().to_vec();
            let read = groups::List::read(name, &stored).expect("its own name");
            assert!(groups::List::read(&"A".repeat(43), &stored).is_none(), "another name");
            let back = read.restore(serde_json::from_slice(json).unwrap());
            assert_eq!(back.identity, session.identity);
            assert_eq!(back.sid, session.sid);
        }
        // The same groups, the same list; other groups, another.
        let name = |g: Vec<String>| groups::split(&groups::write(&with_groups(g, None)).unwrap().0).unwrap().0.to_string();
        assert_eq!(name(many.clone()), name(many.clone()));
        assert_ne!(name(many.clone()), name(many[1..].to_vec()));
    }

    #[test]
    fn a_few_groups_stay_in_the_session() {
        let session = with_groups(vec!["family".into(), "photos".into()], None);
        let (bytes, list) = groups::write(&session).unwrap();
        assert!(list.is_none());
        assert!(groups::split(&bytes).is_none());
        let back: Session = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.identity, session.identity);
    }

    #[test]
    fn sentinel_urls_parse() {
        let u = SentinelUrl::parse("redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:5000/mymaster/2").unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                tls: false,
                sentinels: vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26379), ("::1".into(), 5000)],
                service: "mymaster".into(),
                db: 2,
                username: None,
                password: Some("p@ss".into()),
            }
        );
        let u = SentinelUrl::parse("rediss+sentinel://app:pw@s1:1/svc").unwrap();
        assert!(u.tls);
        assert_eq!((u.username.as_deref(), u.password.as_deref(), u.db), (Some("app"), Some("pw"), 0));
        for bad in ["redis+sentinel://", "redis+sentinel://h:1", "redis+sentinel://h:x/svc", "redis://h/svc", "redis+sentinel://h/svc/db"] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
