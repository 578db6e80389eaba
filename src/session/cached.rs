//! A short-lived in-process cache in front of a shared store (Redis), so
//! most verifies need no network round trip.
//!
//! Entries live `session.cache_ttl` (default 2 s). Anything this instance
//! writes or deletes is dropped from its cache at once; a logout or
//! revocation on *another* instance takes effect here within the TTL. That
//! is the staleness bound README documents and the tests check.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Index, Session, SessionStore, StoreError, StoreKey};

/// Sessions read recently from `inner`.
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    cache: Cache<StoreKey, Arc<Session>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn SessionStore>, ttl: Duration, capacity: u64) -> CachedStore {
        CachedStore { inner, cache: Cache::builder().max_capacity(capacity).time_to_live(ttl).build() }
    }
}

#[async_trait::async_trait]
impl SessionStore for CachedStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(hit) = self.cache.get(key) {
            crate::metrics::get().session_cache(true);
            return Ok(Some(hit));
        }
        crate::metrics::get().session_cache(false);
        let found = self.inner.get(key).await?;
        if let Some(session) = &found {
            self.cache.insert(*key, Arc::clone(session));
        }
        Ok(found)
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        self.inner.put(key, session, ttl).await
    }

    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
        self.cache.invalidate(key);
        self.inner.update(key, session, ttl).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        self.inner.delete(key).await
    }

    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError> {
        self.inner.find(index).await
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.claim(name, ttl).await
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        self.inner.release(name).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
