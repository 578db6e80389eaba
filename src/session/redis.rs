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

use super::{Session, SessionStore, StoreError, StoreKey};

const PREFIX: &str = "portcullis:session:";

/// Sessions in Redis.
pub struct RedisStore {
    manager: ConnectionManager,
    timeout: Duration,
    down: AtomicBool,
}

impl RedisStore {
    /// Prepares the store; no connection is made until the first call, so
    /// portcullis starts even while Redis is down.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        // Never include the URL in errors: it may carry a password.
        let client = redis::Client::open(url).map_err(|_| StoreError::Unavailable("invalid Redis URL".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        Ok(RedisStore { manager, timeout, down: AtomicBool::new(false) })
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
        let mut conn = self.manager.clone();
        let secs = ttl.as_secs().max(1);
        self.call(conn.set_ex::<_, _, ()>(Self::redis_key(key), bytes, secs)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.call(conn.del::<_, ()>(Self::redis_key(key))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.call(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(|_| ())
    }
}
