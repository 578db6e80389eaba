//! The embedded session store: sessions in this process's memory.
//!
//! Bounded (`session.memory_max_sessions`, least recently used evicted
//! first) and each entry expires by itself. Sessions are lost on restart and
//! not shared between instances: use the redis store for that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::{Session, SessionStore, StoreError, StoreKey};

#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<StoreKey, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &StoreKey, value: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &StoreKey,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Sessions in memory.
pub struct MemoryStore {
    cache: Cache<StoreKey, Entry>,
}

impl MemoryStore {
    pub fn new(max_sessions: u64) -> MemoryStore {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// How many sessions are held (approximate until pending work runs).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.cache.get(key).map(|e| e.session))
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        self.cache.insert(key.clone(), Entry { session, ttl });
        Ok(())
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn session(user: &str) -> Arc<Session> {
        Arc::new(Session {
            identity: crate::identity::Identity { user: user.into(), ..Default::default() },
            claims: Default::default(),
            id_token: None,
            access_token: None,
            refresh_token: None,
            access_expires_at: None,
            sid: None,
            created_at: 0,
            expires_at: u64::MAX,
        })
    }

    #[tokio::test]
    async fn put_get_delete() {
        let store = MemoryStore::new(10);
        let key = SessionId::generate().store_key();
        assert!(store.get(&key).await.unwrap().is_none());
        store.put(&key, session("alice"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().unwrap().identity.user, "alice");
        store.delete(&key).await.unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn entries_expire() {
        let store = MemoryStore::new(10);
        let key = SessionId::generate().store_key();
        store.put(&key, session("alice"), Duration::from_millis(50)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bounded() {
        let store = MemoryStore::new(100);
        for _ in 0..1000 {
            store.put(&SessionId::generate().store_key(), session("x"), Duration::from_secs(60)).await.unwrap();
        }
        assert!(store.len() <= 100, "{}", store.len());
    }
}
