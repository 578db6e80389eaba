//! A short-lived in-process cache in front of a shared store (Redis), so
//! most verifies need no network round trip.
//!
//! An answer is never older than `session.cache_ttl` (default 2 s),
//! counted from before the read that fetched it. Anything this instance
//! writes or deletes is dropped from its cache at once; a logout or
//! revocation on *another* instance takes effect here within the TTL. That
//! is the staleness bound README documents and the tests check.
//!
//! A session in use is read again in the background once half its TTL has
//! passed, so verifies of active sessions do not wait for Redis every TTL;
//! that read replaces the entry only if nothing else changed it meanwhile
//! (a local logout is never undone by it). Likewise a read that missed is
//! cached only if this instance wrote nothing while it was under way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;

use super::{Index, Session, SessionStore, StoreError, StoreKey};

/// A session as read from `inner`, and when the read began.
struct Entry {
    session: Arc<Session>,
    fetched: Instant,
    /// A background read is under way.
    renewing: AtomicBool,
}

impl Entry {
    fn new(session: Arc<Session>, fetched: Instant) -> Arc<Entry> {
        Arc::new(Entry { session, fetched, renewing: AtomicBool::new(false) })
    }
}

/// Sessions read recently from `inner`.
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    cache: Cache<StoreKey, Arc<Entry>>,
    ttl: Duration,
    /// Counts this instance's writes, so a read that began before one is
    /// not cached after it.
    writes: AtomicU64,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn SessionStore>, ttl: Duration, capacity: u64) -> CachedStore {
        CachedStore {
            inner,
            cache: Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            ttl,
            writes: AtomicU64::new(0),
        }
    }

    /// Runs a write to `inner` for `key`: the cached entry goes before it
    /// (effective at once) and again after it, once the write counter
    /// has moved (so a read begun meanwhile is not cached either).
    async fn write<T>(&self, key: &StoreKey, write: impl Future<Output = T>) -> T {
        self.cache.invalidate(key);
        let result = write.await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(key);
        result
    }

    /// Reads `key` again off the request's path; the result replaces
    /// `entry` only if it is still the cached one.
    fn renew(&self, key: StoreKey, entry: &Arc<Entry>) {
        let (inner, cache, old) = (Arc::clone(&self.inner), self.cache.clone(), Arc::clone(entry));
        tokio::spawn(async move {
            let fetched = Instant::now();
            let found = inner.get(&key).await;
            cache.entry(key).and_compute_with(|current| match current {
                Some(c) if Arc::ptr_eq(c.value(), &old) => match found {
                    Ok(Some(session)) => Op::Put(Entry::new(session, fetched)),
                    // Ended elsewhere: gone here too.
                    Ok(None) => Op::Remove,
                    // Kept until its TTL; then a verify asks Redis and fails closed.
                    Err(_) => {
                        old.renewing.store(false, Ordering::Relaxed);
                        Op::Nop
                    }
                },
                _ => Op::Nop,
            });
        });
    }
}

#[async_trait::async_trait]
impl SessionStore for CachedStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(hit) = self.cache.get(key) {
            let age = hit.fetched.elapsed();
            if age < self.ttl {
                crate::metrics::get().session_cache(true);
                if age >= self.ttl / 2 && !hit.renewing.swap(true, Ordering::Relaxed) {
                    self.renew(*key, &hit);
                }
                return Ok(Some(Arc::clone(&hit.session)));
            }
        }
        crate::metrics::get().session_cache(false);
        let fetched = Instant::now();
        let writes = self.writes.load(Ordering::SeqCst);
        let found = self.inner.get(key).await?;
        if let Some(session) = &found {
            // Checked under the entry's lock, which a write's second
            // invalidation also takes.
            self.cache.entry(*key).and_compute_with(|_| {
                if self.writes.load(Ordering::SeqCst) == writes {
                    Op::Put(Entry::new(Arc::clone(session), fetched))
                } else {
                    Op::Nop
                }
            });
        }
        Ok(found)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::session::memory::MemoryStore;
    use crate::session::{SessionId, test_session};

    /// A store whose reads, once made, wait for `gate` before answering:
    /// a read that began before a write and ends after it. Only the reads
    /// before `free_from` (a count of reads) wait.
    struct Gated {
        inner: MemoryStore,
        gate: tokio::sync::Mutex<()>,
        reads: AtomicUsize,
        free_from: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SessionStore for Gated {
        async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
            let found = self.inner.get(key).await;
            if self.reads.fetch_add(1, Ordering::SeqCst) < self.free_from.load(Ordering::SeqCst) {
                let _open = self.gate.lock().await;
            }
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
            free_from: AtomicUsize::new(usize::MAX),
        });
        let key = SessionId::generate().store_key();
        gated.put(&key, Arc::new(test_session("alice")), HOUR).await.unwrap();
        let cached = Arc::new(CachedStore::new(Arc::clone(&gated) as Arc<dyn SessionStore>, ttl, 10));
        (gated, cached, key)
    }

    async fn user(store: &CachedStore, key: &StoreKey) -> Option<String> {
        store.get(key).await.unwrap().map(|s| s.identity.user.clone())
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
    async fn sessions_in_use_are_read_again_in_the_background() {
        let ttl = Duration::from_millis(400);
        let (gated, cached, key) = setup(ttl).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        assert_eq!(gated.reads.load(Ordering::SeqCst), 1);
        // Changed elsewhere (another instance).
        gated.inner.put(&key, Arc::new(test_session("bob")), HOUR).await.unwrap();
        tokio::time::sleep(ttl / 2).await;
        // Past half the TTL: answered from the cache at once, read again behind.
        let held = gated.gate.lock().await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        drop(held);
        while gated.reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("bob"));
        assert_eq!(gated.reads.load(Ordering::SeqCst), 2, "the renewed entry answered");
    }

    #[tokio::test]
    async fn a_background_read_never_undoes_a_logout() {
        let ttl = Duration::from_millis(400);
        let (gated, cached, key) = setup(ttl).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        tokio::time::sleep(ttl / 2).await;
        let held = gated.gate.lock().await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        while gated.reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // The background read found alice; the logout comes before it ends.
        cached.delete(&key).await.unwrap();
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(user(&cached, &key).await, None);
    }

    #[tokio::test]
    async fn a_session_ended_elsewhere_is_gone_after_the_background_read() {
        let ttl = Duration::from_millis(400);
        let (gated, cached, key) = setup(ttl).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        gated.inner.delete(&key).await.unwrap();
        tokio::time::sleep(ttl / 2).await;
        // Within the TTL the cached answer stands (the documented bound)...
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        while gated.reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // ...and the background read ends it here too, before the TTL.
        assert_eq!(user(&cached, &key).await, None);
        assert!(gated.reads.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn a_background_read_never_replaces_a_newer_entry() {
        let ttl = Duration::from_millis(400);
        let (gated, cached, key) = setup(ttl).await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        tokio::time::sleep(ttl / 2).await;
        // Only the background read (the second) waits.
        gated.free_from.store(2, Ordering::SeqCst);
        let held = gated.gate.lock().await;
        assert_eq!(user(&cached, &key).await.as_deref(), Some("alice"));
        while gated.reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Meanwhile this instance writes a newer session, and a verify
        // caches it.
        cached.put(&key, Arc::new(test_session("bob")), HOUR).await.unwrap();
        assert_eq!(user(&cached, &key).await.as_deref(), Some("bob"));
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reads = gated.reads.load(Ordering::SeqCst);
        assert_eq!(user(&cached, &key).await.as_deref(), Some("bob"), "the older read did not replace it");
        assert_eq!(gated.reads.load(Ordering::SeqCst), reads, "answered from the cache");
    }
}
