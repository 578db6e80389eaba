//! Sessions over time: token refresh (once, even under concurrency), a
//! refused refresh, identity read again, and cookie key rotation.

mod common;

use std::time::Duration;

use common::idp::Idp;
use common::redis::Redis;
use common::service::{KEY_A, KEY_B, Service, local_toml};
use common::{browser, login, plain, verify};
use serde_json::json;

fn redis_toml(idp: &Idp, redis: &Redis, keys: &str) -> String {
    format!("{}store = \"redis\"\nredis_url = \"{}\"\nkeys = [{keys}]\n", local_toml(idp), redis.url())
}

/// Waits until an access token issued now with a 2 s lifetime is due for
/// refresh (refresh starts when half its life is left).
async fn until_due() {
    tokio::time::sleep(Duration::from_millis(2100)).await;
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_under_concurrency() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let svc = Service::start(&redis_toml(&idp, &redis, &format!("\"{KEY_A}\""))).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    login(&client, &svc.url, &home).await;
    idp.set_expires_in(300);
    until_due().await;

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, base, home) = (client.clone(), svc.url.clone(), home.clone());
        set.spawn(async move { verify(&client, &base, &home).await.status().as_u16() });
    }
    let statuses = set.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.refresh_count().await, 1, "refreshed more than once");
    assert!(svc.wait_for_log("session_refreshed", Duration::from_secs(2)).await);
    // The rotated refresh token was stored: the session keeps working.
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
}

#[tokio::test]
async fn refused_refresh_ends_the_session() {
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let (svc, client, home) = common::signed_in(&idp).await;
    idp.refuse_refresh();
    until_due().await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    assert!(svc.logs().contains("refresh refused"), "{}", svc.logs());
}

#[tokio::test]
async fn groups_changed_at_the_provider_apply_after_refresh() {
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    idp.set_user(json!({"sub": "u-dave", "preferred_username": "dave", "groups": ["staff"]}));
    let (svc, client, home) =
        common::signed_in_with(&format!("{}\n[[role_map]]\ngroup = \"admins\"\nrole = \"admin\"\n", local_toml(&idp))).await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-groups"], "staff");
    assert_eq!(r.headers()["remote-role"], "guest");
    idp.set_user(json!({"sub": "u-dave", "preferred_username": "dave", "groups": ["staff", "admins"]}));
    until_due().await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-groups"], "staff,admins");
    assert_eq!(r.headers()["remote-role"], "admin");
}

/// Some providers answer a refresh without an ID token. The identity is
/// then mapped from userinfo over who the person is to the provider (`iss`,
/// `sub`), which a session that keeps no claims (the default) knows from
/// the provider's issuer and its own subject.
#[tokio::test]
async fn a_refresh_without_an_id_token_maps_the_same_person_again() {
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    idp.refresh_without_id_token();
    idp.set_user(json!({"sub": "u-erin", "preferred_username": "erin", "groups": ["staff"]}));
    let rule = format!("[[identity.rules]]\nexpr = \"claims.iss == '{}' && claims.sub == 'u-erin'\"\nuser = \"erin-at-home\"\n", idp.issuer);
    let (svc, client, home) = common::signed_in_with(&format!("{}\n{rule}", local_toml(&idp))).await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-user"], "erin-at-home");
    assert_eq!(r.headers()["remote-groups"], "staff");
    idp.set_user(json!({"sub": "u-erin", "preferred_username": "erin", "groups": ["staff", "admins"]}));
    until_due().await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200, "{}", svc.logs());
    assert_eq!(idp.refresh_count().await, 1);
    assert!(svc.wait_for_log("session_refreshed", Duration::from_secs(2)).await, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-groups"], "staff,admins", "userinfo was read");
    assert_eq!(r.headers()["remote-user"], "erin-at-home", "the rule still sees iss and sub");
}

#[tokio::test]
async fn nothing_is_refreshed_before_the_access_token_nears_expiry() {
    let idp = Idp::start().await;
    let (_svc, _client, _home) = common::signed_in(&idp).await;
    assert_eq!(idp.refresh_count().await, 0);
}

#[tokio::test]
async fn cookie_key_rotation() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let mut svc = Service::start(&redis_toml(&idp, &redis, &format!("\"{KEY_A}\""))).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    let cb = login(&client, &svc.url, &home).await;
    let old_cookie = cb.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let config = svc.dir.path().join("portcullis.toml");
    let text = std::fs::read_to_string(&config).unwrap();

    // Step 1: the new key first; the old cookie still works and is sealed again.
    std::fs::write(&config, text.replace(&format!("[\"{KEY_A}\"]"), &format!("[\"{KEY_B}\", \"{KEY_A}\"]"))).unwrap();
    svc.restart().await;
    svc.wait_ready().await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    let resealed = r.headers().get("set-cookie").expect("re-sealed cookie").to_str().unwrap().to_string();
    assert!(resealed.starts_with("_portcullis=") && resealed.contains("HttpOnly"), "{resealed}");
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "sealed again although current");

    // Step 2: the old key removed; the re-sealed cookie works, the old one not.
    std::fs::write(&config, text.replace(&format!("[\"{KEY_A}\"]"), &format!("[\"{KEY_B}\"]"))).unwrap();
    svc.restart().await;
    svc.wait_ready().await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    let r = plain().get(format!("{}/auth/nginx", svc.url)).header("cookie", &old_cookie).header("x-original-url", &home).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// `session.refresh_interval` is honoured however short (10 s is the
/// least allowed): a group added at the provider after one refresh shows
/// at the next, one interval later, not 30 s later.
#[tokio::test]
async fn the_identity_is_read_again_every_refresh_interval() {
    let idp = Idp::start().await;
    idp.set_user(json!({"sub": "u-fay", "preferred_username": "fay", "groups": ["staff"]}));
    let (svc, client, home) = common::signed_in_with(&format!("{}refresh_interval = \"10s\"\n", local_toml(&idp))).await;
    let signed_in = std::time::Instant::now();
    // The first refresh, one interval after the login.
    while idp.refresh_count().await == 0 {
        assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
        assert!(signed_in.elapsed() < Duration::from_secs(13), "no refresh {:?} after the login", signed_in.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first = std::time::Instant::now();
    idp.set_user(json!({"sub": "u-fay", "preferred_username": "fay", "groups": ["staff", "admins"]}));
    loop {
        let r = verify(&client, &svc.url, &home).await;
        assert_eq!(r.status(), 200);
        if r.headers()["remote-groups"] == "staff,admins" {
            break;
        }
        assert!(first.elapsed() < Duration::from_secs(13), "identity not read again {:?} after the last refresh", first.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(first.elapsed() >= Duration::from_secs(9), "refreshed again after only {:?}", first.elapsed());
    assert_eq!(idp.refresh_count().await, 2);
}

/// Two instances on one Redis, each with its own cache (`session.cache_ttl`).
async fn two_instances(idp: &Idp, redis: &Redis, extra: &str) -> (Service, Service) {
    let toml = |_: ()| format!("{}{extra}", redis_toml(idp, redis, &format!("\"{KEY_A}\"")));
    let a = Service::start(&toml(())).await;
    let b = Service::start(&toml(())).await;
    a.wait_ready().await;
    b.wait_ready().await;
    (a, b)
}

/// With a provider that rotates refresh tokens, an instance whose cache
/// still holds the session as it was before another instance refreshed it
/// must not refresh again with the spent token (which the provider refuses,
/// ending the session everywhere). Checked well after the refreshing
/// instance let go of its claim (30 s at most).
#[tokio::test]
async fn an_instance_caching_the_old_session_does_not_refresh_it_again() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let (a, b) = two_instances(&idp, &redis, "cache_ttl = \"60s\"\n").await;
    // Cookies ignore ports: the browser sends the same cookie to both.
    let client = browser();
    let home = format!("{}/", a.url);
    login(&client, &a.url, &home).await;
    idp.set_expires_in(300);
    assert_eq!(verify(&client, &b.url, &home).await.status(), 200, "b caches the session");
    until_due().await;
    assert_eq!(verify(&client, &a.url, &home).await.status(), 200);
    assert_eq!(idp.refresh_count().await, 1);
    assert!(a.wait_for_log("session_refreshed", Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_secs(31)).await;

    assert_eq!(verify(&client, &b.url, &home).await.status(), 200, "{}", b.logs());
    assert_eq!(verify(&client, &a.url, &home).await.status(), 200);
    assert_eq!(verify(&client, &b.url, &home).await.status(), 200);
    assert_eq!(idp.refresh_count().await, 1, "the spent refresh token was used again");
    assert!(!b.logs().contains("refresh refused"), "{}", b.logs());
}

/// Commands this Redis has served so far, `INFO` aside.
fn commands(redis: &Redis) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split_once(":calls=").and_then(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok()))
        .sum()
}

/// While another instance refreshes a session, this one answers from its
/// cache without asking Redis each time, and a Redis outage meanwhile does
/// not turn the cached session into a 503 (within `cache_ttl`).
#[tokio::test]
async fn while_another_instance_refreshes_the_cached_session_is_served() {
    let Some(mut redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let (a, b) = two_instances(&idp, &redis, "cache_ttl = \"10s\"\n").await;
    let client = browser();
    let home = format!("{}/", a.url);
    login(&client, &a.url, &home).await;
    assert_eq!(verify(&client, &b.url, &home).await.status(), 200, "b caches the session");
    idp.set_expires_in(300);
    idp.set_token_delay(Duration::from_secs(4));
    until_due().await;
    // a refreshes, slowly, holding the claim.
    let refreshing = tokio::spawn({
        let (client, url, home) = (client.clone(), a.url.clone(), home.clone());
        async move { verify(&client, &url, &home).await.status() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = commands(&redis);
    for _ in 0..50 {
        assert_eq!(verify(&client, &b.url, &home).await.status(), 200);
    }
    let used = commands(&redis) - before;
    assert!(used <= 3, "{used} Redis commands for 50 verifies of a cached session");

    redis.stop();
    for _ in 0..5 {
        assert_eq!(verify(&client, &b.url, &home).await.status(), 200, "a cached session became unavailable");
    }
    drop(refreshing);
}
