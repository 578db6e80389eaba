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
