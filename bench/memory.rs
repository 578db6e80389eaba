//! `bench-memory`: what a session costs in the memory store, in heap bytes,
//! counted by a counting allocator (no RSS noise from the allocator's own
//! caches). The session is shaped like the ones `bench/run` signs in: the
//! test provider's claims, a refresh token, the ID token in the browser's
//! logout cookie (so not here).
//!
//! ```text
//! cargo run --release --example bench-memory [COUNT]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use portcullis::claims::StoredClaims;
use portcullis::identity::IdentityParts;
use portcullis::session::memory::MemoryStore;
use portcullis::config::HeaderNames;
use portcullis::headers::IdentityHeaders;
use portcullis::session::{Index, Session, SessionId, SessionStore, StoreKey};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn session(i: usize) -> Session {
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:41234", "aud": "portcullis-test", "exp": 1795000300u64, "iat": 1795000000u64,
        "nonce": "q3Jk2l1n8s0d9f8g7h6j5k4l3m2n1b0v9c8x7z6a5s4", "sub": "user-1", "preferred_username": "alice",
        "email": "alice@example.com", "name": "Alice"
    });
    let identity = IdentityParts {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice".into()),
        role: "guest".into(),
        subject: "user-1".into(),
        person: "alice".into(),
        person_email: Some("alice@example.com".into()),
        ..Default::default()
    };
    Session {
        identity: identity.into(),
        // As without claim-reading policy expressions (the default).
        claims: StoredClaims::keep(claims.as_object().unwrap(), false),
        claims_partial: true,
        id_token: None,
        refresh_token: Some(format!("rt-{i}-AAAAAAAAAAAAAAAAAAAAAA").into()),
        access_expires_at: Some(1795000300),
        sid: None,
        created_at: 1795000000,
        expires_at: u64::MAX,
        last_seen: 1795000000,
        refreshed_at: 1795000000,
        token: None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let keys: Vec<StoreKey> = (0..n).map(|_| SessionId::generate().store_key()).collect();
    let start = LIVE.load(Ordering::Relaxed);
    let sessions: Vec<Session> = (0..n).map(session).collect();
    let alone = LIVE.load(Ordering::Relaxed) - start - (n * std::mem::size_of::<Session>()) as isize;
    let store = MemoryStore::new(2 * n as u64);
    for (s, key) in sessions.into_iter().zip(&keys) {
        store.put(key, Arc::new(s), Duration::from_secs(3600)).await.unwrap();
    }
    store.len();
    let total = LIVE.load(Ordering::Relaxed) - start;
    let per = |b: isize| b / n as isize;
    println!("{n} sessions in the memory store: {} bytes each", per(total));
    println!("  the session itself: {} (struct {}, its strings {})", per(alone) + std::mem::size_of::<Session>() as isize, std::mem::size_of::<Session>(), per(alone));
    println!("  the store's bookkeeping (key, entry, Arc): {}", per(total - alone) - std::mem::size_of::<Session>() as isize);
    // A verify leaves nothing behind: the identity headers are computed
    // on each one.
    let headers = IdentityHeaders::new(&HeaderNames::default()).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    for key in &keys {
        let s = store.get(key).await.unwrap().unwrap();
        headers.write(&s.identity, &mut hyper::HeaderMap::new());
    }
    println!("  kept by a verify: {}", per(LIVE.load(Ordering::Relaxed) - before));
    // Each sign-in also leaves a marker for ten minutes (its spent state).
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        store.claim(&format!("login:{i:0>43}"), Duration::from_secs(600)).await.unwrap();
    }
    println!("  a sign-in's marker (its spent state, for ten minutes): {}", per(LIVE.load(Ordering::Relaxed) - before));
    let t = Instant::now();
    let found = store.find(&Index::Sid("not-there".into())).await.unwrap().len();
    println!("finding sessions by sid (back-channel logout) looks through all: {found} found in {:?}", t.elapsed());
}
