//! Sessions in Redis, shared by every portcullis instance that points at it.
//!
//! Uses the `redis` crate's [`ConnectionManager`], created lazily and
//! reconnecting by itself, with a timeout on every call. Each session is one
//! key (`portcullis:session:<hash of the ID>`) holding JSON, with a Redis TTL
//! so it expires by itself. An outage is logged once when it starts and once
//! when it ends, not per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Index, Session, SessionStore, StoreError, StoreKey};

const PREFIX: &str = "portcullis:session:";
const INDEX_PREFIX: &str = "portcullis:index:";
const MARKER_PREFIX: &str = "portcullis:marker:";

/// Sessions in Redis.
pub struct RedisStore {
    manager: ConnectionManager,
    timeout: Duration,
    index_ttl: Duration,
    down: AtomicBool,
}

impl RedisStore {
    /// Prepares the store; no connection is made until the first call, so
    /// portcullis starts even while Redis is down.
    /// `index_ttl` is the longest a session can live (`session.ttl`).
    pub fn new(url: &str, timeout: Duration, index_ttl: Duration) -> Result<RedisStore, StoreError> {
        // Never include the URL in errors: it may carry a password.
        let client = redis::Client::open(url).map_err(|_| StoreError::Unavailable("invalid Redis URL".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        Ok(RedisStore { manager, timeout, index_ttl, down: AtomicBool::new(false) })
    }

    fn redis_key(key: &StoreKey) -> String {
        let mut k = String::with_capacity(PREFIX.len() + key.as_str().len());
        k.push_str(PREFIX);
        k.push_str(key.as_str());
        k
    }

    /// Runs one call with the timeout, and keeps track of outages.
    async fn call<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        match &result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(event = "store_recovered", "redis session store is reachable again");
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::error!(event = "store_down", error = %e, "redis session store is unreachable; verify fails closed until it returns");
                }
            }
        }
        result
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
        let mut conn = self.manager.clone();
        let raw: Option<Vec<u8>> = self.call(conn.get(Self::redis_key(key))).await?;
        match raw {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice::<Session>(&bytes)
                .map(|s| Some(Arc::new(s)))
                .map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&*session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let secs = ttl.as_secs().max(1);
        // One round trip: the session, then its index entries. An index set
        // lives a full session lifetime past its latest write, so it outlives
        // every session in it; stale members are dropped when found.
        let mut pipe = redis::pipe();
        pipe.set_ex(Self::redis_key(key), bytes, secs).ignore();
        for index in session.indexes() {
            let name = index_key(&index);
            pipe.sadd(&name, key.as_str()).ignore();
            pipe.expire(&name, self.index_ttl.as_secs().max(secs) as i64).ignore();
        }
        let mut conn = self.manager.clone();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let session = self.get(key).await.ok().flatten();
        let mut pipe = redis::pipe();
        pipe.del(Self::redis_key(key)).ignore();
        for index in session.iter().flat_map(|s| s.indexes()) {
            pipe.srem(index_key(&index), key.as_str()).ignore();
        }
        let mut conn = self.manager.clone();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError> {
        let name = index_key(index);
        let mut conn = self.manager.clone();
        let members: Vec<String> = self.call(conn.smembers(&name)).await?;
        let mut found = Vec::new();
        let mut stale = Vec::new();
        for member in members {
            let key = StoreKey(member);
            match self.get(&key).await? {
                Some(session) if session.indexes().contains(index) => found.push((key, session)),
                _ => stale.push(key.0),
            }
        }
        if !stale.is_empty() {
            let _: Result<(), _> = self.call(conn.srem(&name, stale)).await;
        }
        Ok(found)
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.manager.clone();
        let ms = ttl.as_millis().max(1) as u64;
        let set: Option<String> = self
            .call(redis::cmd("SET").arg(format!("{MARKER_PREFIX}{name}")).arg(1).arg("NX").arg("PX").arg(ms).query_async(&mut conn))
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.call(conn.del::<_, ()>(format!("{MARKER_PREFIX}{name}"))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.call(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(|_| ())
    }
}
