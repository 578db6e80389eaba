//! The login flow on the redis store, against a redis-server of the test's
//! own, including Redis going away and coming back.

mod common;

use std::time::Duration;

use common::idp::Idp;
use common::redis::Redis;
use common::service::{KEY_A, Service, local_toml};
use common::{browser, login, verify};

fn redis_toml(idp: &Idp, redis: &Redis) -> String {
    format!("{}store = \"redis\"\nredis_url = \"{}\"\nkeys = [\"{KEY_A}\"]\n", local_toml(idp), redis.url())
}

#[tokio::test]
async fn flow_on_redis_keeps_no_usable_cookie_in_the_store() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let svc = Service::start(&redis_toml(&idp, &redis)).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    let cb = login(&client, &svc.url, &home).await;
    assert_eq!(cb.status(), 302);
    let cookie = cb.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).find(|c| c.starts_with("_portcullis=")).unwrap();
    let value = cookie.split(';').next().unwrap().trim_start_matches("_portcullis=").to_string();

    let keys = redis.cli(&["--scan", "--pattern", "portcullis:session:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains(&value));
    let ttl: u64 = redis.cli(&["TTL", keys[0]]).trim().parse().unwrap();
    assert!(ttl > 43000 && ttl <= 43200, "session expires by itself in Redis: ttl {ttl}");
    let dump = redis.cli(&["GET", keys[0]]);
    assert!(!dump.contains(&value), "the stored session holds the cookie");
    assert!(dump.contains("alice"));
    // The ID token waits in the browser's logout cookie, not in the store.
    let id_token = idp.issued().last().unwrap().id_token.clone();
    assert!(!dump.contains(&id_token) && !dump.contains(id_token.rsplit('.').next().unwrap()), "{dump}");
    // No policy expression reads claims: none are kept.
    let stored: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(stored["claims"], serde_json::Value::Null, "{dump}");
    assert_eq!(stored["claims_partial"], true, "{dump}");

    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    // The first verify read Redis, the second the in-process cache.
    let metrics = common::plain().get(format!("{}/metrics", svc.url)).send().await.unwrap().text().await.unwrap();
    for result in ["hit", "miss"] {
        let line = format!("portcullis_cache_lookups_total{{cache=\"sessions\",result=\"{result}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "{line} missing in\n{metrics}");
    }
    client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    assert_eq!(redis.cli(&["--scan", "--pattern", "portcullis:session:*"]).trim(), "");
}

#[tokio::test]
async fn redis_outage_fails_closed_and_recovers_by_itself() {
    let Some(mut redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (svc, client, home) = common::signed_in_with(&redis_toml(&idp, &redis)).await;

    redis.stop();
    let stopped = std::time::Instant::now();
    // A session read moments ago may still be answered from the in-process
    // cache, for at most session.cache_ttl (2 s); after that, 5xx only.
    loop {
        let status = verify(&client, &svc.url, &home).await.status();
        if status.is_server_error() {
            break;
        }
        assert_eq!(status, 200);
        assert!(stopped.elapsed() < Duration::from_millis(2500), "still 200 {:?} into the outage", stopped.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let status = verify(&client, &svc.url, &home).await.status();
        assert!(status.is_server_error(), "verify answered {status} with Redis down");
    }
    let ready = common::plain().get(format!("{}/readyz", svc.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let logs = svc.logs();
    assert_eq!(logs.matches("store_down").count(), 1, "the outage is logged once:\n{logs}");

    redis.start_again().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = verify(&client, &svc.url, &home).await.status();
        if status == 200 {
            break;
        }
        assert!(status.is_server_error(), "verify answered {status} while Redis came back");
        assert!(std::time::Instant::now() < deadline, "verify did not recover after Redis returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(svc.wait_for_log("store_recovered", Duration::from_secs(2)).await);
}

#[tokio::test]
async fn without_the_cache_an_outage_fails_closed_at_once() {
    let Some(mut redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (svc, client, home) = common::signed_in_with(&format!("{}cache_ttl = \"0s\"\n", redis_toml(&idp, &redis))).await;
    redis.stop();
    for _ in 0..5 {
        let status = verify(&client, &svc.url, &home).await.status();
        assert!(status.is_server_error(), "verify answered {status} with Redis down");
    }
}

#[tokio::test]
async fn redis_down_at_start_then_up() {
    let Some(mut redis) = Redis::start().await else { return };
    redis.stop();
    let idp = Idp::start().await;
    let svc = Service::start(&redis_toml(&idp, &redis)).await;
    let home = format!("{}/", svc.url);
    assert!(svc.wait_for_log("identity provider discovered", Duration::from_secs(10)).await);
    let ready = common::plain().get(format!("{}/readyz", svc.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["problems"]["session_store"].is_string(), "{body}");
    // A login cannot complete without a store: a readable 503, no cookie.
    let client = browser();
    let cb = login(&client, &svc.url, &home).await;
    assert_eq!(cb.status(), 503);
    assert!(cb.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("_portcullis=")));
    redis.start_again().await;
    svc.wait_ready().await;
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
}
