//! The embedded session store: sessions in this process's memory.
//!
//! Bounded (`session.memory_max_sessions`, least recently used evicted
//! first) and each entry expires by itself. Sessions are lost on restart and
//! not shared between instances: use the redis store for that.
//!
//! There is no index: finding sessions by user, `sub` or `sid` (back-channel
//! logout, revocation) looks through all of them, which is rare and takes
//! milliseconds at the sizes this store is for, while an index would cost
//! every session memory for as long as it lives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::{Index, Session, SessionStore, StoreError, StoreKey};

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

/// Markers live for the time given when they were claimed.
struct MarkerTtl;

impl moka::Expiry<String, Duration> for MarkerTtl {
    fn expire_after_create(&self, _key: &String, ttl: &Duration, _created_at: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// Sessions in memory.
pub struct MemoryStore {
    cache: Cache<StoreKey, Entry>,
    markers: Cache<String, Duration>,
}

impl MemoryStore {
    pub fn new(max_sessions: u64) -> MemoryStore {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(PerEntryTtl)
                .build(),
            markers: Cache::builder().max_capacity(max_sessions).expire_after(MarkerTtl).build(),
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
        self.cache.insert(*key, Entry { session, ttl });
        Ok(())
    }

    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
        use moka::ops::compute::{CompResult, Op};
        let result = self.cache.entry(*key).and_compute_with(|existing| match existing {
            Some(_) => Op::Put(Entry { session, ttl }),
            None => Op::Nop,
        });
        Ok(matches!(result, CompResult::ReplacedWith(_)))
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError> {
        Ok(self
            .cache
            .iter()
            .filter(|(_, e)| e.session.is_filed_under(index))
            .map(|(k, e)| (*k, e.session))
            .collect())
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.markers.entry(name.to_string()).or_insert_with(|| ttl).is_fresh())
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        self.markers.invalidate(name);
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
        Arc::new(crate::session::test_session(user))
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
    async fn sessions_are_found_by_index_until_deleted_or_evicted() {
        let store = MemoryStore::new(10);
        let a = SessionId::generate().store_key();
        let b = SessionId::generate().store_key();
        store.put(&a, session("alice"), Duration::from_secs(60)).await.unwrap();
        store.put(&b, session("alice"), Duration::from_millis(50)).await.unwrap();
        assert_eq!(store.find(&Index::User("alice".into())).await.unwrap().len(), 2);
        assert!(store.find(&Index::User("bob".into())).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.find(&Index::User("alice".into())).await.unwrap().len(), 1);
        // Replaced by a session of another user: no longer found as alice.
        store.put(&a, session("bob"), Duration::from_secs(60)).await.unwrap();
        assert!(store.find(&Index::User("alice".into())).await.unwrap().is_empty());
        assert_eq!(store.find(&Index::User("bob".into())).await.unwrap().len(), 1);
        store.delete(&a).await.unwrap();
        assert!(store.find(&Index::User("bob".into())).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn update_never_brings_back_a_deleted_session() {
        let store = MemoryStore::new(10);
        let key = SessionId::generate().store_key();
        assert!(!store.update(&key, session("alice"), Duration::from_secs(60)).await.unwrap());
        assert!(store.get(&key).await.unwrap().is_none());
        store.put(&key, session("alice"), Duration::from_secs(60)).await.unwrap();
        let mut changed = (*session("alice")).clone();
        changed.last_seen = 42;
        assert!(store.update(&key, Arc::new(changed), Duration::from_secs(60)).await.unwrap());
        assert_eq!(store.get(&key).await.unwrap().unwrap().last_seen, 42);
        assert_eq!(store.find(&Index::User("alice".into())).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_marker_is_claimed_once_until_released_or_expired() {
        let store = MemoryStore::new(10);
        assert!(store.claim("m", Duration::from_millis(80)).await.unwrap());
        assert!(!store.claim("m", Duration::from_millis(80)).await.unwrap());
        store.release("m").await.unwrap();
        assert!(store.claim("m", Duration::from_millis(80)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(store.claim("m", Duration::from_secs(1)).await.unwrap());
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
