//! Sessions across instances and over time: several portcullis processes
//! on one Redis, back-channel and front-channel logout, and the
//! `sessions` command; personal access tokens revoked on one instance and
//! the `tokens` command.

mod common;

use std::process::Command;

use common::idp::Idp;
use common::redis::Redis;
use common::service::{KEY_A, Service, base_toml};
use common::{browser, login, plain, verify};
use serde_json::json;

/// Two instances on one Redis, both reachable as the same public URL would
/// be behind a load balancer; `public_url` points at the first.
async fn two_instances(idp: &Idp, redis: &Redis) -> (Service, Service) {
    let port = common::free_port();
    let toml = |listen: &str| {
        base_toml(idp, &format!("http://127.0.0.1:{port}")).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{listen}\""))
            + &format!("store = \"redis\"\nredis_url = \"{}\"\nkeys = [\"{KEY_A}\"]\n", redis.url())
    };
    let a = Service::start(&toml(&format!("127.0.0.1:{port}"))).await;
    let b = Service::start(&toml("127.0.0.1:0")).await;
    a.wait_ready().await;
    b.wait_ready().await;
    (a, b)
}

#[tokio::test]
async fn login_on_one_instance_verify_and_logout_on_another() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (a, b) = two_instances(&idp, &redis).await;
    let client = browser();
    let home = format!("{}/", a.url);
    let cb = login(&client, &a.url, &home).await;
    assert_eq!(cb.status(), 302);
    let cookie = session_cookie(&cb);
    assert_eq!(with_cookie(&b.url, &cookie, &home).await, 200);
    assert_eq!(with_cookie(&a.url, &cookie, &home).await, 200);
    client.get(format!("{}/oauth2/logout", b.url)).send().await.unwrap();
    // At once on the instance that logged out ...
    assert_eq!(with_cookie(&b.url, &cookie, &home).await, 401);
    // ... and on the other within session.cache_ttl (2 s by default).
    assert_ended_within(&a.url, &cookie, &home, CACHE_BOUND).await;
}

/// How long a logout or revocation on one instance may take to apply on
/// another: `session.cache_ttl` (2 s by default) plus a margin for the test.
const CACHE_BOUND: std::time::Duration = std::time::Duration::from_millis(2500);

fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("_portcullis=") && c.len() > "_portcullis=".len())
        .expect("a session cookie")
}

async fn with_cookie(base: &str, cookie: &str, url: &str) -> u16 {
    plain()
        .get(format!("{base}/auth/nginx"))
        .header("cookie", cookie)
        .header("x-original-url", url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// As [`assert_ended_within`] with a browser's own cookies.
async fn client_ended_within(client: &reqwest::Client, base: &str, url: &str, bound: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        match verify(client, base, url).await.status().as_u16() {
            401 => return,
            200 => assert!(started.elapsed() < bound, "still signed in after {:?}", started.elapsed()),
            other => panic!("verify answered {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls until the session is refused, failing if that takes longer than
/// `bound` or if anything but 200 or 401 comes back.
async fn assert_ended_within(base: &str, cookie: &str, url: &str, bound: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        match with_cookie(base, cookie, url).await {
            401 => return,
            200 => assert!(started.elapsed() < bound, "still signed in after {:?}", started.elapsed()),
            other => panic!("verify answered {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn post_logout_token(base: &str, token: &str) -> reqwest::Response {
    plain().post(format!("{base}/oauth2/backchannel-logout")).form(&[("logout_token", token)]).send().await.unwrap()
}

#[tokio::test]
async fn backchannel_logout_by_sid_and_by_sub_on_two_instances() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (a, b) = two_instances(&idp, &redis).await;
    let home = format!("{}/", a.url);

    // alice has two provider sessions (laptop, phone); bob one.
    let laptop = browser();
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice", "sid": "sid-laptop"}));
    login(&laptop, &a.url, &home).await;
    let phone = browser();
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice", "sid": "sid-phone"}));
    login(&phone, &b.url, &home).await;
    let bob = browser();
    idp.set_user(json!({"sub": "sub-bob", "preferred_username": "bob", "sid": "sid-bob"}));
    login(&bob, &a.url, &home).await;
    for c in [&laptop, &phone, &bob] {
        assert_eq!(verify(c, &a.url, &home).await.status(), 200);
    }

    // By sid: only the laptop session ends, seen from both instances.
    let r = post_logout_token(&b.url, &idp.logout_token(json!({"sid": "sid-laptop"}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["sessions_ended"], 1);
    assert_eq!(verify(&laptop, &b.url, &home).await.status(), 401);
    client_ended_within(&laptop, &a.url, &home, CACHE_BOUND).await;
    assert_eq!(verify(&phone, &a.url, &home).await.status(), 200);

    // By sub: every session of alice ends; bob's stays.
    let r = post_logout_token(&a.url, &idp.logout_token(json!({"sub": "sub-alice"}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&phone, &a.url, &home).await.status(), 401);
    client_ended_within(&phone, &b.url, &home, CACHE_BOUND).await;
    assert_eq!(verify(&bob, &b.url, &home).await.status(), 200);
    assert!(a.logs().contains("backchannel_logout"));
}

/// OpenID Front-Channel Logout: the provider frames
/// `/oauth2/frontchannel-logout?iss=…&sid=…`; the session with that `sid`
/// ends on every instance, and an `iss` that is not our provider's ends
/// nothing.
#[tokio::test]
async fn frontchannel_logout_by_sid_on_two_instances_and_a_foreign_iss_ends_nothing() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (a, b) = two_instances(&idp, &redis).await;
    let home = format!("{}/", a.url);
    let laptop = browser();
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice", "sid": "sid-laptop"}));
    login(&laptop, &a.url, &home).await;
    let phone = browser();
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice", "sid": "sid-phone"}));
    login(&phone, &b.url, &home).await;
    // Both instances have read both sessions (and keep them cached).
    for c in [&laptop, &phone] {
        assert_eq!(verify(c, &a.url, &home).await.status(), 200);
        assert_eq!(verify(c, &b.url, &home).await.status(), 200);
    }
    let frontchannel = |base: &str, iss: &str, sid: &str| {
        browser().get(format!("{base}/oauth2/frontchannel-logout")).query(&[("iss", iss), ("sid", sid)]).send()
    };

    // Another issuer, or no sid: 400, and nothing ends.
    for (iss, sid) in [("https://evil.example.com", "sid-laptop"), (&format!("{}/", idp.issuer)[..], "sid-laptop"), (&idp.issuer[..], "")] {
        let r = frontchannel(&a.url, iss, sid).await.unwrap();
        assert_eq!(r.status(), 400, "{iss} {sid}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';") && csp.ends_with(&format!("frame-ancestors {}", idp.issuer)), "{csp}");
    }
    assert_eq!(verify(&laptop, &a.url, &home).await.status(), 200, "a refused front-channel logout ended a session");

    // Our provider, the laptop's sid: only the laptop session ends, at once
    // here and within session.cache_ttl on the other instance.
    let r = frontchannel(&b.url, &idp.issuer, "sid-laptop").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';") && csp.ends_with(&format!("frame-ancestors {}", idp.issuer)), "{csp}");
    assert!(!csp.contains("'none'; frame-ancestors 'none'") && !csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(r.text().await.unwrap().contains("The identity provider ended this session."));
    assert_eq!(verify(&laptop, &b.url, &home).await.status(), 401);
    client_ended_within(&laptop, &a.url, &home, CACHE_BOUND).await;
    assert_eq!(verify(&phone, &a.url, &home).await.status(), 200);
    assert_eq!(verify(&phone, &b.url, &home).await.status(), 200);
    assert!(b.logs().contains("frontchannel_logout"), "{}", b.logs());
}

#[tokio::test]
async fn invalid_logout_tokens_are_400_and_revoke_nothing() {
    let idp = Idp::start().await;
    let svc = Service::start(&common::service::local_toml(&idp)).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let client = browser();
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice", "sid": "sid-1"}));
    login(&client, &svc.url, &home).await;

    let bad_signature = {
        let t = idp.logout_token(json!({"sid": "sid-1"}));
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.{}", "A".repeat(342))
    };
    let used = idp.logout_token(json!({"sub": "sub-other"}));
    assert_eq!(post_logout_token(&svc.url, &used).await.status(), 200);
    for (what, token) in [
        ("nonce", idp.logout_token(json!({"sid": "sid-1", "nonce": "n"}))),
        ("no events", idp.logout_token(json!({"sid": "sid-1", "events": null}))),
        ("wrong event", idp.logout_token(json!({"sid": "sid-1", "events": {"urn:other": {}}}))),
        ("no sub or sid", idp.logout_token(json!({}))),
        ("no jti", idp.logout_token(json!({"sid": "sid-1", "jti": null}))),
        ("wrong aud", idp.logout_token(json!({"sid": "sid-1", "aud": "someone-else"}))),
        ("wrong iss", idp.logout_token(json!({"sid": "sid-1", "iss": "https://evil.example.com"}))),
        ("old", idp.logout_token(json!({"sid": "sid-1", "iat": common::idp::now() - 3600, "exp": null}))),
        ("bad signature", bad_signature),
        ("replayed jti", used),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let r = post_logout_token(&svc.url, &token).await;
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{what}");
        assert_eq!(verify(&client, &svc.url, &home).await.status(), 200, "{what} revoked a session");
    }
    let r = plain().post(format!("{}/oauth2/backchannel-logout", svc.url)).body("x".repeat(100_000)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // And the real one works.
    let r = post_logout_token(&svc.url, &idp.logout_token(json!({"sid": "sid-1"}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
}

fn sessions_cmd(svc: &Service, args: &[&str]) -> (i32, String, String) {
    command(svc, "sessions", args)
}

/// `portcullis COMMAND ARGS --config` with `svc`'s configuration.
fn command(svc: &Service, command: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg(command)
        .args(args)
        .arg("--config")
        .arg(svc.dir.path().join("portcullis.toml"))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn sessions_command_lists_and_revokes() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (a, _b) = two_instances(&idp, &redis).await;
    let home = format!("{}/", a.url);
    idp.set_user(json!({"sub": "sub-carol", "preferred_username": "carol"}));
    let c1 = browser();
    login(&c1, &a.url, &home).await;
    let c2 = browser();
    login(&c2, &a.url, &home).await;

    let (code, out, err) = sessions_cmd(&a, &["list", "--user", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.contains("carol")).count(), 2, "{out}");
    assert!(!out.contains("eyJ") && !out.contains("rt-") && !out.contains("at-"), "tokens listed: {out}");
    let (code, out, _) = sessions_cmd(&a, &["list", "--sub", "sub-carol"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("sub-carol")).count(), 2, "{out}");

    // Seen by the instance (and so in its cache) before the revocation.
    assert_eq!(verify(&c1, &a.url, &home).await.status(), 200);
    let (code, out, err) = sessions_cmd(&a, &["revoke", "--user", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 session(s) ended"), "{out}");
    client_ended_within(&c1, &a.url, &home, CACHE_BOUND).await;
    assert_eq!(verify(&c2, &a.url, &home).await.status(), 401);

    let (code, _, err) = sessions_cmd(&a, &["revoke"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn sessions_command_explains_the_memory_store() {
    let idp = Idp::start().await;
    let svc = Service::start(&common::service::local_toml(&idp)).await;
    let (code, _, err) = sessions_cmd(&svc, &["list", "--user", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("redis"), "{err}");
}

/// Asks `/auth/nginx` at `base` about `url` with the personal token `token`.
async fn with_token(base: &str, token: &str, url: &str) -> u16 {
    plain().get(format!("{base}/auth/nginx")).header("x-original-url", url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Polls until `token` is refused at `base`, failing if that takes longer than `bound`.
async fn token_refused_within(base: &str, token: &str, url: &str, bound: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        match with_token(base, token, url).await {
            401 => return,
            200 => assert!(started.elapsed() < bound, "still accepted after {:?}", started.elapsed()),
            other => panic!("verify answered {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revoked_tokens_are_refused_on_every_instance_within_the_cache_ttl() {
    let Some(redis) = Redis::start().await else { return };
    let idp = Idp::start().await;
    let (a, b) = two_instances(&idp, &redis).await;
    idp.set_user(json!({"sub": "sub-dave", "preferred_username": "dave"}));
    let client = browser();
    let home = format!("{}/", a.url);
    login(&client, &a.url, &home).await;
    let sync = common::tokens::make(&client, &a.url, "sync", "30d", "").await;
    let backup = common::tokens::make(&client, &a.url, "backup", "never", "").await;
    // Both instances know them (and now hold them in their caches).
    for base in [&a.url, &b.url] {
        assert_eq!(with_token(base, &sync, &home).await, 200);
        assert_eq!(with_token(base, &backup, &home).await, 200);
    }

    // Revoked on the page at one instance: refused there at once, on the
    // other within session.cache_ttl.
    common::tokens::revoke(&client, &a.url, "sync").await;
    assert_eq!(with_token(&a.url, &sync, &home).await, 401);
    token_refused_within(&b.url, &sync, &home, CACHE_BOUND).await;
    assert_eq!(with_token(&b.url, &backup, &home).await, 200, "only that one");

    // `tokens list` shows the person's tokens, never a token itself.
    let (code, out, err) = command(&a, "tokens", &["list", "--user", "dave"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backup") && !out.contains("sync"), "{out}");
    assert!(!out.contains("pcat_"), "{out}");
    // `sessions list` shows sessions only.
    let (_, out, _) = sessions_cmd(&a, &["list", "--user", "dave"]);
    assert_eq!(out.lines().filter(|l| l.contains("dave")).count(), 1, "{out}");

    // A later sign-in (a 12 h session) keeps the person's index as long
    // as the token that never expires.
    login(&browser(), &a.url, &home).await;
    let index_ttl: i64 = redis.cli(&["TTL", "portcullis:index:user:dave"]).trim().parse().unwrap();
    assert!(index_ttl > 9 * 365 * 86400, "the index would forget the token: {index_ttl}");
    // `sessions revoke --sessions-only` keeps the tokens ...
    let (code, out, err) = sessions_cmd(&a, &["revoke", "--user", "dave", "--sessions-only"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 session(s) ended"), "{out}");
    client_ended_within(&client, &a.url, &home, CACHE_BOUND).await;
    assert_eq!(with_token(&b.url, &backup, &home).await, 200);
    // ... `tokens revoke` ends them, everywhere.
    let (code, out, err) = command(&a, "tokens", &["revoke", "--sub", "sub-dave"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 token(s) revoked"), "{out}");
    token_refused_within(&b.url, &backup, &home, CACHE_BOUND).await;
    assert_eq!(with_token(&a.url, &backup, &home).await, 401);

    // And `sessions revoke` (without --sessions-only) takes tokens too.
    login(&client, &a.url, &home).await;
    let third = common::tokens::make(&client, &a.url, "third", "30d", "").await;
    assert_eq!(with_token(&b.url, &third, &home).await, 200);
    let (_, out, _) = sessions_cmd(&a, &["revoke", "--user", "dave"]);
    assert!(out.contains("1 session(s) ended, 1 token(s) revoked"), "{out}");
    token_refused_within(&b.url, &third, &home, CACHE_BOUND).await;
}
