//! A short-lived in-process cache in front of a shared store (Redis), so
//! most verifies need no network round trip.
//!
//! An answer is never older than `session.cache_ttl` (default 2 s),
//! counted from before the read that fetched it. Anything this instance
//! writes or deletes is dropped from its cache at once; a logout or
//! revocation on *another* instance takes effect here within the TTL. That
//! is the staleness bound the book (docs/src/sessions.md) documents and the tests check.
//!
//! A read is cached only if this instance wrote nothing while it was under
//! way, so a read that began before a local logout never brings the
//! session back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use super::{Index, MemoryBound, Session, SessionStore, StoreError, StoreKey};

/// A session as read from `inner`, and when the read began.
#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    fetched: Instant,
    /// What it counts for against `session.memory_max_bytes`.
    weight: u32,
}

/// Weighs a cached session by its size (computed once, when read).
#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<StoreKey, Entry> for ByWeight {
    fn weight(&self, _key: &StoreKey, entry: &Entry) -> u64 {
        u64::from(entry.weight)
    }
}

/// How often, at most, entries older than the TTL are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Sessions read recently from `inner`: quick_cache, as the memory store,
/// for its cheap reads (a verify is one). An entry older than the TTL is
/// never answered; it is replaced by the next read, or swept out (at most
/// every 30 s, on a read of Redis), so the cache holds about the sessions
/// of the last half minute, not the bound's worth of old ones.
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    cache: Cache<StoreKey, Entry, ByWeight>,
    ttl: Duration,
    /// Counts this instance's writes, so a read that began before one is
    /// not cached after it.
    writes: AtomicU64,
    bound: MemoryBound,
    /// When old entries were last swept out, and how often they are.
    swept: Mutex<Instant>,
    sweep_every: Duration,
}

impl CachedStore {
    /// A cache of at most `capacity` sessions (of up to a MiB each).
    pub fn new(inner: Arc<dyn SessionStore>, ttl: Duration, capacity: u64) -> CachedStore {
        Self::bounded(inner, ttl, MemoryBound::sessions(capacity))
    }

    /// A cache of sessions weighed by their size, within `bound`.
    pub fn bounded(inner: Arc<dyn SessionStore>, ttl: Duration, bound: MemoryBound) -> CachedStore {
        CachedStore {
            inner,
            cache: Cache::with_options(super::memory::options(&bound), ByWeight, Default::default(), Default::default()),
            ttl,
            writes: AtomicU64::new(0),
            bound,
            swept: Mutex::new(Instant::now()),
            sweep_every: SWEEP_EVERY,
        }
    }

    /// Runs a write to `inner` for `key`: the cached entry goes before it
    /// (effective at once) and again after it, once the write counter
    /// has moved (so a read begun meanwhile is not cached either).
    async fn write<T>(&self, key: &StoreKey, write: impl Future<Output = T>) -> T {
        self.cache.remove(key);
        let result = write.await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(key);
        result
    }
}

#[async_trait::async_trait]
impl SessionStore for CachedStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(hit) = self.cache.get(key) {
            // Counted from before the read that fetched it.
            if hit.fetched.elapsed() < self.ttl {
                crate::metrics::get().session_cache(true);
                return Ok(Some(hit.session));
            }
        }
        crate::metrics::get().session_cache(false);
        self.fetch(key).await
    }

    async fn get_fresh(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.fetch(key).await
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        self.write(key, self.inner.put(key, session, ttl)).await
    }

    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
        self.write(key, self.inner.update(key, session, ttl)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.write(key, self.inner.delete(key)).await
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

impl CachedStore {
    /// Reads `inner` and caches what it found (a session ended there
    /// leaves this cache too).
    async fn fetch(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.sweep_now_and_then();
        let fetched = Instant::now();
        let writes = self.writes.load(Ordering::SeqCst);
        let found = self.inner.get(key).await?;
        if let Some(session) = &found {
            let weight = u32::try_from(self.bound.weigh(session)).unwrap_or(u32::MAX);
            self.cache.insert(*key, Entry { session: Arc::clone(session), fetched, weight });
            // A write that counted after this read began may have come
            // before or after the insert: if after, its second
            // invalidation removed the entry; if before, this does.
            if self.writes.load(Ordering::SeqCst) != writes {
                self.cache.remove(key);
            }
        } else {
            self.cache.remove(key);
        }
        Ok(found)
    }

    /// Drops entries older than the TTL, if that was last done a while ago.
    fn sweep_now_and_then(&self) {
        let Ok(mut swept) = self.swept.try_lock() else { return };
        if swept.elapsed() < self.sweep_every {
            return;
        }
        *swept = Instant::now();
        drop(swept);
        self.cache.retain(|_, e| e.fetched.elapsed() < self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::session::memory::MemoryStore;
    use crate::session::{SessionId, test_session};

    /// A store whose reads, once made, wait for `gate` before answering:
    /// a read that began before a write and ends after it.
    struct Gated {
        inner: MemoryStore,
        gate: tokio::sync::Mutex<()>,
        reads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SessionStore for Gated {
        async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
            let found = self.inner.get(key).await;
            self.reads.fetch_add(1, Ordering::SeqCst);
            let _open = self.gate.lock().await;
            found
        }
        async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
            self.inner.put(key, session, ttl).await
        }
        async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
            self.inner.update(key, session, ttl).await
        }
        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
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
            Ok(())
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    async fn setup(ttl: Duration) -> (Arc<Gated>, Arc<CachedStore>, StoreKey) {
        let gated = Arc::new(Gated {
            inner: MemoryStore::new(10),
            gate: Default::default(),
            reads: AtomicUsize::new(0),
        });
        let key = SessionId::generate().store_key();
        gated.put(&key, Arc::new(test_session("alice")), HOUR).await.unwrap();
        let cached = Arc::new(CachedStore::new(Arc::clone(&gated) as Arc<dyn SessionStore>, ttl, 10));
        (gated, cached, key)
    }

    async fn user(store: &CachedStore, key: &StoreKey) -> Option<String> {
        store.get(key).await.unwrap().map(|s| s.identity.user().to_string())
    }

    #[tokio::test]
    async fn entries_older_than_the_ttl_are_swept_out() {
        let (gated, _, key) = setup(HOUR).await;
        let mut cached = CachedStore::new(Arc::clone(&gated) as Arc<dyn SessionStore>, Duration::from_millis(50), 100);
        cached.sweep_every = Duration::ZERO;
        let others: Vec<StoreKey> = (0..5).map(|_| SessionId::generate().store_key()).collect();
        for k in &others {
            gated.put(k, Arc::new(test_session("bob")), HOUR).await.unwrap();
            assert_eq!(user(&cached, k).await.as_deref(), Some("bob"));
        }
        assert_eq!(cached.cache.len(), 5);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // The next read of the store sweeps the five out and keeps its own.
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        assert_eq!(cached.cache.len(), 1);
    }

    #[tokio::test]
    async fn a_read_under_way_during_a_logout_is_not_cached() {
        let (gated, cached, key) = setup(HOUR).await;
        let held = gated.gate.lock().await;
        let reading = tokio::spawn({
            let (cached, key) = (Arc::clone(&cached), key);
            async move { user(&cached, &key).await }
        });
        while gated.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        cached.delete(&key).await.unwrap();
        drop(held);
        // That verify began before the logout and answers as it found it;
        // the next one does not.
        assert_eq!(reading.await.unwrap().as_deref(), Some("alice"));
        assert_eq!(user(&cached, &key).await, None);
    }

    #[tokio::test]
    async fn an_answer_is_never_older_than_the_ttl_counted_from_before_its_read() {
        let ttl = Duration::from_millis(400);
        let (gated, cached, key) = setup(ttl).await;
        // A slow read: 300 ms between reading and answering.
        let held = gated.gate.lock().await;
        let reading = tokio::spawn({
            let (cached, key) = (Arc::clone(&cached), key);
            async move { user(&cached, &key).await }
        });
        while gated.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        assert_eq!(reading.await.unwrap().as_deref(), Some("alice"));
        gated.inner.put(&key, Arc::new(test_session("bob")), HOUR).await.unwrap();
        // 150 ms after the answer was cached, 450 ms after its read began.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("bob"));
    }
}
