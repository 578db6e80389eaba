//! What one person, or one account with huge claims, can make portcullis
//! hold: sessions per person, bytes per session, bytes in all.

mod common;

use common::idp::Idp;
use common::redis::Redis;
use common::service::{KEY_A, Service, local_toml};
use common::{browser, login, verify};
use serde_json::json;

/// Signs in `n` browsers as whoever the provider has set; returns them.
async fn sign_in(svc: &Service, n: usize) -> Vec<reqwest::Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        let client = browser();
        assert_eq!(login(&client, &svc.url, &format!("{}/", svc.url)).await.status(), 302);
        out.push(client);
    }
    out
}

async fn statuses(svc: &Service, clients: &[reqwest::Client]) -> Vec<u16> {
    let mut out = Vec::new();
    for c in clients {
        out.push(verify(c, &svc.url, &format!("{}/", svc.url)).await.status().as_u16());
    }
    out
}

async fn a_person_holds_at_most_max_sessions_per_user(toml: &str) {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("{}max_sessions_per_user = 3\n", toml.replace("ISSUER", &idp.issuer).replace("LOCAL", &local_toml(&idp)))).await;
    svc.wait_ready().await;
    // Sessions are dated to the second: one sign-in a second.
    let mut alice = Vec::new();
    for _ in 0..5 {
        alice.extend(sign_in(&svc, 1).await);
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    }
    idp.set_user(json!({"sub": "u-bob", "preferred_username": "bob"}));
    let bob = sign_in(&svc, 1).await;
    // The oldest two of alice's ended; bob's is his own.
    assert_eq!(statuses(&svc, &alice).await, [401, 401, 200, 200, 200]);
    assert_eq!(statuses(&svc, &bob).await, [200]);
    assert_eq!(svc.logs().matches("too many sessions of one person").count(), 2, "{}", svc.logs());
}

#[tokio::test]
async fn memory_store_ends_the_oldest_sessions_of_a_person_beyond_the_cap() {
    a_person_holds_at_most_max_sessions_per_user("LOCAL").await;
}

#[tokio::test]
async fn no_cap_keeps_every_session_of_a_person() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("{}max_sessions_per_user = 0\n", local_toml(&idp))).await;
    svc.wait_ready().await;
    let mut alice = Vec::new();
    for _ in 0..25 {
        alice.extend(sign_in(&svc, 1).await);
    }
    assert_eq!(statuses(&svc, &alice).await, [200; 25]);
    assert!(!svc.logs().contains("too many sessions of one person"), "{}", svc.logs());
}

#[tokio::test]
async fn redis_store_ends_the_oldest_sessions_of_a_person_beyond_the_cap() {
    let Some(redis) = Redis::start().await else { return };
    a_person_holds_at_most_max_sessions_per_user(&format!("LOCALstore = \"redis\"\nredis_url = \"{}\"\nkeys = [\"{KEY_A}\"]\n", redis.url())).await;
}

/// A display name (or email, group, role) longer than any header can carry
/// is kept cut to that limit.
#[tokio::test]
async fn a_huge_name_claim_is_stored_cut_to_the_header_limit() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    idp.set_user(json!({"sub": "u-long", "preferred_username": "long", "name": "N".repeat(25_000)}));
    let svc = Service::start(&format!("{}store = \"redis\"\nredis_url = \"{}\"\nkeys = [\"{KEY_A}\"]\n", local_toml(&idp), redis.url())).await;
    svc.wait_ready().await;
    let client = browser();
    assert_eq!(login(&client, &svc.url, &format!("{}/", svc.url)).await.status(), 302);
    let r = verify(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-name"].len(), 4096);
    assert_eq!(r.headers()["remote-user"], "long");
    let key = redis.cli(&["--scan", "--pattern", "portcullis:session:*"]);
    let dump = redis.cli(&["GET", key.trim()]);
    // (The ID token, too large for the logout cookie, is kept too: as a
    // token, base64url, never cut.)
    assert!(dump.contains(&"N".repeat(4096)) && !dump.contains(&"N".repeat(4097)), "the name is kept whole");
}

/// The memory store is bounded by bytes: sessions with large identities
/// (here 1,000 groups each, about 30 KB) count for their size, so 1 MiB
/// holds a few dozen of them, not 100,000.
#[tokio::test]
async fn the_memory_store_is_bounded_by_bytes() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("{}memory_max_bytes = 1048576\n", local_toml(&idp))).await;
    svc.wait_ready().await;
    let groups: Vec<String> = (0..1000).map(|i| format!("group-with-a-long-name-{i:06}")).collect();
    let mut clients = Vec::new();
    for i in 0..60 {
        idp.set_user(json!({"sub": format!("u-{i}"), "preferred_username": format!("user{i}"), "groups": groups}));
        clients.extend(sign_in(&svc, 1).await);
    }
    let held = statuses(&svc, &clients).await;
    let live = held.iter().filter(|s| **s == 200).count();
    assert!(live <= 40, "{live} sessions of ~30 KB held within 1 MiB: {held:?}");
    assert!(live >= 10, "only {live} held: {held:?}");
    assert_eq!(held.last(), Some(&200), "the newest session is kept");
}
