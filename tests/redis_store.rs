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
async fn personal_tokens_fail_closed_when_redis_is_down() {
    let Some(mut redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (svc, client, home) = common::signed_in_with(&format!("{}cache_ttl = \"0s\"\n", redis_toml(&idp, &redis))).await;
    let token = common::tokens::make(&client, &svc.url, "sync", "30d", "").await;
    let ask = || common::plain().get(format!("{}/auth/nginx", svc.url)).header("x-original-url", &home).bearer_auth(&token).send();
    assert_eq!(ask().await.unwrap().status(), 200);
    redis.stop();
    let status = ask().await.unwrap().status();
    assert_eq!(status, 503, "a token with Redis down");
    let r = client.get(format!("{}/oauth2/tokens", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("Tokens unavailable"));
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

/// `GET`s this Redis has served so far.
fn gets(redis: &Redis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// A Cookie header stuffed with copies of a session cookie (say, one whose
/// session ended) must not cost a store read per copy: at most two distinct
/// values are tried.
#[tokio::test]
async fn copies_of_the_session_cookie_cost_at_most_two_store_reads() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let svc = Service::start(&redis_toml(&idp, &redis)).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let pair = |r: &reqwest::Response| {
        let c = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).find(|c| c.starts_with("_portcullis=")).unwrap();
        c.split(';').next().unwrap().to_string()
    };
    let ended_client = browser();
    let ended = pair(&login(&ended_client, &svc.url, &home).await);
    ended_client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    let live = pair(&login(&browser(), &svc.url, &home).await);
    let ask = |cookie: String| {
        let url = format!("{}/auth/nginx", svc.url);
        let home = home.clone();
        async move { common::plain().get(url).header("cookie", cookie).header("x-original-url", home).send().await.unwrap().status() }
    };

    let before = gets(&redis);
    assert_eq!(ask(vec![ended.as_str(); 600].join("; ")).await, 401);
    let read = gets(&redis) - before;
    assert!(read <= 2, "{read} store reads for one request");

    // The session the browser holds besides a stale one is still found.
    let before = gets(&redis);
    let mut both = vec![ended.as_str(); 599];
    both.push(&live);
    assert_eq!(ask(both.join("; ")).await, 200);
    let read = gets(&redis) - before;
    assert!(read <= 2, "{read} store reads for one request");
}

/// A logout token is accepted while its `iat` is within the window plus
/// `oidc.leeway` either side; its `jti` must be remembered for all that
/// time, or the same token is accepted again once forgotten.
#[tokio::test]
async fn a_logout_token_id_is_remembered_as_long_as_the_token_is_accepted() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let toml = redis_toml(&idp, &redis).replace("insecure_http = true\n", "insecure_http = true\nleeway = \"10m\"\n");
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let token = idp.logout_token(serde_json::json!({"sub": "user-1", "jti": "jti-remembered"}));
    let send = || common::plain().post(format!("{}/oauth2/backchannel-logout", svc.url)).form(&[("logout_token", token.clone())]).send();
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(send().await.unwrap().status(), 400, "replayed at once");
    // Accepted while iat >= now - 5m - leeway, and iat may be up to leeway
    // ahead: 5m + 2 x 10m from the first use.
    let pttl: i64 = redis.cli(&["PTTL", "portcullis:marker:jti:jti-remembered"]).trim().parse().unwrap();
    assert!(pttl >= (25 * 60 - 10) * 1000, "the jti is forgotten after {pttl} ms");
}

/// Fifty groups of thirty characters are stored once in Redis for every
/// session that has them, not once per session, and every session still
/// gets them all; a session whose group list is gone or altered is
/// refused, never let in without its groups.
#[tokio::test]
async fn a_long_group_list_is_stored_once_and_a_missing_one_ends_the_session() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let groups: Vec<String> = (0..50).map(|i| format!("{:x<30}", format!("team-{i:02}-"))).collect();
    idp.set_user(serde_json::json!({
        "sub": "user-1", "preferred_username": "alice", "email": "alice@example.com",
        "email_verified": true, "name": "Alice", "groups": groups,
    }));
    let svc = Service::start(&redis_toml(&idp, &redis)).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let (laptop, phone) = (browser(), browser());
    login(&laptop, &svc.url, &home).await;
    login(&phone, &svc.url, &home).await;
    for client in [&laptop, &phone] {
        let r = verify(client, &svc.url, &home).await;
        assert_eq!(r.status(), 200, "{}", svc.logs());
        assert_eq!(r.headers()["remote-groups"].to_str().unwrap(), groups.join(","));
    }
    let lists = redis.cli(&["--scan", "--pattern", "portcullis:groups:*"]);
    let lists: Vec<&str> = lists.lines().collect();
    assert_eq!(lists.len(), 1, "one list for both sessions: {lists:?}");
    let ttl: u64 = redis.cli(&["TTL", lists[0]]).trim().parse().unwrap();
    assert!(ttl > 43000, "the list lives as long as its sessions: ttl {ttl}");
    let sessions = redis.cli(&["--scan", "--pattern", "portcullis:session:*"]);
    for key in sessions.lines() {
        let stored = redis.cli(&["GET", key]);
        assert!(stored.contains("alice") && !stored.contains("team-07"), "{stored}");
    }

    // Another instance (nothing in its memory) reads the list from Redis.
    let other = Service::start(&redis_toml(&idp, &redis)).await;
    other.wait_ready().await;
    let cookie = |client: &reqwest::Client| client.get(format!("{}/auth/nginx", other.url)).header("x-original-url", &home);
    let r = cookie(&laptop).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", other.logs());
    assert_eq!(r.headers()["remote-groups"].to_str().unwrap(), groups.join(","));

    // An altered list is not the one the session names: refused.
    redis.cli(&["SET", lists[0], r#"{"groups":["admins"]}"#, "KEEPTTL"]);
    let third = Service::start(&redis_toml(&idp, &redis)).await;
    third.wait_ready().await;
    let ask = |svc: &Service, client: &reqwest::Client| {
        client.get(format!("{}/auth/nginx", svc.url)).header("x-original-url", home.clone()).send()
    };
    assert_eq!(ask(&third, &phone).await.unwrap().status(), 401, "{}", third.logs());
    // Gone (evicted under maxmemory, say): refused too, and said in the log.
    redis.cli(&["DEL", lists[0]]);
    let fourth = Service::start(&redis_toml(&idp, &redis)).await;
    fourth.wait_ready().await;
    assert_eq!(ask(&fourth, &laptop).await.unwrap().status(), 401);
    assert!(fourth.logs().contains("session_groups_missing"), "{}", fourth.logs());
}
