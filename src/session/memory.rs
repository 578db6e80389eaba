//! The embedded session store: sessions in this process's memory.
//!
//! Bounded by bytes (`session.memory_max_bytes`, each session weighed by
//! its size) and by count (`session.memory_max_sessions`); when full, the
//! sessions least used lately go first. Each entry ends at its own time. Sessions are
//! lost on restart and not shared between instances: use the redis store
//! for that.
//!
//! Built on `quick_cache`, which costs about 90 bytes per entry where moka,
//! with its timer wheel and access-order lists, costs over 300: at 100,000
//! sessions that is the difference of a fifth of the process. quick_cache
//! has no expiry of its own, so each entry carries its end: an ended entry
//! is never returned, and ended entries are swept out at most once a
//! minute, on a new session.
//!
//! There is no index: finding sessions by user, `sub` or `sid` (back-channel
//! logout, revocation) looks through all of them, which is rare and takes
//! milliseconds at the sizes this store is for, while an index would cost
//! every session memory for as long as it lives.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{OptionsBuilder, Weighter};

use super::{Index, MemoryBound, Session, SessionStore, StoreError, StoreKey};

/// Each shard of the cache holds at least this much (unless the whole is
/// less), so that no single session outweighs its shard.
const MIN_SHARD_BYTES: u64 = 4 << 20;

/// How often, at most, ended sessions are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    ends: Instant,
    /// What it counts for against `session.memory_max_bytes`.
    weight: u64,
}

impl Entry {
    fn new(session: Arc<Session>, ttl: Duration, bound: &MemoryBound) -> Entry {
        let weight = bound.weigh(&session);
        // Ten years is as good as never, and cannot overflow.
        Entry { session, ends: Instant::now() + ttl.min(Duration::from_secs(10 * 365 * 86400)), weight }
    }

    fn live(&self, now: Instant) -> bool {
        self.ends > now
    }
}

/// quick_cache's options for sessions held within `bound` (here and in
/// the cache in front of Redis).
pub(super) fn options(bound: &MemoryBound) -> quick_cache::Options {
    OptionsBuilder::new()
        .estimated_items_capacity(usize::try_from(bound.max_sessions.min(bound.max_bytes / 1024)).unwrap_or(usize::MAX).max(1))
        .weight_capacity(bound.max_bytes)
        .shards(usize::try_from((bound.max_bytes / MIN_SHARD_BYTES).clamp(1, 64)).unwrap_or(1))
        .build()
        .expect("both capacities are set")
}

/// Markers by a 64-bit digest of their name, each with when it ends (in
/// milliseconds since the store was made). A sign-in leaves one for ten
/// minutes (its spent `state`): a login storm of 100,000 holds as many, so
/// each is two numbers, not a `String` in a cache with per-entry timers.
/// Two names that share a digest (about one chance in 10^10 among 100,000
/// markers) only make the second claim fail: a sign-in to try again.
type Markers = Cache<u64, u64>;

/// The key a marker's name is held under.
fn marker_key(name: &str) -> u64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 of 32 bytes"))
}

/// Weighs a session by its size (computed once, when stored).
#[derive(Clone)]
struct ByWeight;

impl Weighter<StoreKey, Entry> for ByWeight {
    fn weight(&self, _key: &StoreKey, entry: &Entry) -> u64 {
        entry.weight
    }
}

type Sessions = Cache<StoreKey, Entry, ByWeight>;

/// Sessions in memory.
pub struct MemoryStore {
    sessions: Sessions,
    /// When ended sessions were last swept out, and how often they are.
    swept: Mutex<Instant>,
    sweep_every: Duration,
    /// Markers (single-use sign-in states, logout token IDs) and when
    /// each ends; at most `max_sessions` of them, the oldest unused
    /// making room.
    markers: Markers,
    /// What markers' times count from.
    born: Instant,
    bound: MemoryBound,
}

impl MemoryStore {
    /// A store of at most `max_sessions` sessions (of up to a MiB each).
    pub fn new(max_sessions: u64) -> MemoryStore {
        Self::bounded(MemoryBound::sessions(max_sessions))
    }

    /// A store of sessions weighed by their size, within `bound`.
    pub fn bounded(bound: MemoryBound) -> MemoryStore {
        MemoryStore {
            sessions: Sessions::with_options(options(&bound), ByWeight, Default::default(), Default::default()),
            swept: Mutex::new(Instant::now()),
            sweep_every: SWEEP_EVERY,
            markers: Markers::new(usize::try_from(bound.max_sessions).unwrap_or(usize::MAX).max(1)),
            born: Instant::now(),
            bound,
        }
    }

    /// Bytes the live and not yet swept sessions count for.
    pub fn weight(&self) -> u64 {
        self.sessions.weight()
    }

    /// How many live sessions are held.
    pub fn len(&self) -> u64 {
        let now = Instant::now();
        self.sessions.iter().filter(|(_, e)| e.live(now)).count() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops ended sessions, if that was last done over a minute ago.
    fn sweep_now_and_then(&self) {
        let now = Instant::now();
        let Ok(mut swept) = self.swept.try_lock() else { return };
        if now.duration_since(*swept) < self.sweep_every {
            return;
        }
        *swept = now;
        drop(swept);
        self.sessions.retain(|_, e| e.live(now));
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        let now = Instant::now();
        Ok(match self.sessions.get(key) {
            Some(e) if e.live(now) => Some(e.session),
            Some(_) => {
                self.sessions.remove_if(key, |e| !e.live(now));
                None
            }
            None => None,
        })
    }

    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError> {
        self.sweep_now_and_then();
        self.sessions.insert(*key, Entry::new(session, ttl, &self.bound));
        Ok(())
    }

    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let entry = Entry::new(session, ttl, &self.bound);
        // In place, under the shard's lock: an ended or deleted session is
        // never brought back.
        let result = self.sessions.entry(key, None, |_, e| {
            if e.live(now) {
                *e = entry;
                EntryAction::Retain(true)
            } else {
                EntryAction::Remove
            }
        });
        Ok(matches!(result, EntryResult::Retained(true)))
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.sessions.remove(key);
        Ok(())
    }

    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError> {
        let now = Instant::now();
        Ok(self
            .sessions
            .iter()
            .filter(|(_, e)| e.live(now) && e.session.is_filed_under(index))
            .map(|(k, e)| (k, e.session))
            .collect())
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Under the shard's lock: of two claims at once, one takes it.
        let taken = match self.markers.entry(&marker_key(name), None, |_, ends| {
            if *ends > now { EntryAction::Retain(()) } else { EntryAction::ReplaceWithGuard }
        }) {
            EntryResult::Retained(()) => false,
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                let _ = guard.insert(now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)));
                true
            }
            EntryResult::Removed(..) | EntryResult::Timeout => false,
        };
        Ok(taken)
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        self.markers.remove(&marker_key(name));
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
        assert_eq!(store.get(&key).await.unwrap().unwrap().identity.user(), "alice");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_many_claims_at_once_one_takes_the_marker() {
        let store = Arc::new(MemoryStore::new(1000));
        for round in 0..50 {
            let name = format!("login:state-{round}");
            let claims = (0..8).map(|_| {
                let (store, name) = (Arc::clone(&store), name.clone());
                tokio::spawn(async move { store.claim(&name, Duration::from_secs(600)).await.unwrap() })
            });
            let taken = futures_util::future::join_all(claims).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
            assert_eq!(taken, 1, "{name}");
        }
        // Another name is another marker.
        assert!(store.claim("login:state-x", Duration::from_secs(600)).await.unwrap());
    }

    #[tokio::test]
    async fn ended_sessions_are_never_returned_nor_updated_and_are_swept_out() {
        let mut store = MemoryStore::new(100);
        store.sweep_every = Duration::ZERO;
        let ended = SessionId::generate().store_key();
        store.put(&ended, session("alice"), Duration::from_millis(30)).await.unwrap();
        for _ in 0..9 {
            store.put(&SessionId::generate().store_key(), session("bob"), Duration::from_millis(30)).await.unwrap();
        }
        assert_eq!(store.len(), 10);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.len(), 0);
        assert!(store.find(&Index::User("alice".into())).await.unwrap().is_empty());
        assert!(!store.update(&ended, session("alice"), Duration::from_secs(60)).await.unwrap());
        assert!(store.get(&ended).await.unwrap().is_none());
        // Until a sweep, ended entries still take room; a new session sweeps them.
        assert!(store.sessions.len() >= 8, "{}", store.sessions.len());
        let live = SessionId::generate().store_key();
        store.put(&live, session("carol"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(store.sessions.len(), 1);
        assert_eq!(store.get(&live).await.unwrap().unwrap().identity.user(), "carol");
    }

    #[tokio::test]
    async fn large_sessions_count_for_their_size() {
        let store = MemoryStore::bounded(MemoryBound { max_sessions: 100_000, max_bytes: 1 << 20 });
        let mut parts = crate::session::test_session("x").identity.to_parts();
        parts.name = Some("n".repeat(30_000));
        let large = Arc::new(Session { identity: parts.into(), ..crate::session::test_session("x") });
        assert!(large.weight() > 30_000);
        for _ in 0..100 {
            store.put(&SessionId::generate().store_key(), Arc::clone(&large), Duration::from_secs(60)).await.unwrap();
        }
        assert!(store.weight() <= 1 << 20, "{}", store.weight());
        assert!(store.len() <= 35, "{} sessions of 30 KB in 1 MiB", store.len());
        // Small ones count as at least max_bytes / max_sessions.
        let store = MemoryStore::bounded(MemoryBound { max_sessions: 50, max_bytes: 1 << 20 });
        for _ in 0..200 {
            store.put(&SessionId::generate().store_key(), session("x"), Duration::from_secs(60)).await.unwrap();
        }
        assert!(store.len() <= 50, "{}", store.len());
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
