//! Secrets never reach the logs, even at `trace`; identity headers a client
//! sends are never answered back as if they were the user's.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use common::idp::{CLIENT_SECRET, Idp};
use common::redis::Redis;
use common::service::{Service, local_toml};
use common::{browser, location, login, plain, verify};
use portcullis::session::cookie::{Purpose, Sealer};
use reqwest::StatusCode;
use serde_json::json;

/// The value of cookie `name` in a response's `Set-Cookie` headers.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Every way a binary secret could be written: base64 (both alphabets,
/// with and without padding), hex, and Rust's `{:?}` of the bytes.
fn encodings(label: &str, bytes: &[u8]) -> Vec<(String, String)> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        (format!("{label} (base64)"), STANDARD.encode(bytes)),
        (format!("{label} (base64, no padding)"), STANDARD_NO_PAD.encode(bytes)),
        (format!("{label} (base64url)"), URL_SAFE_NO_PAD.encode(bytes)),
        (format!("{label} (hex)"), hex),
        (format!("{label} (bytes)"), format!("{bytes:?}")),
    ]
}

/// Runs a login, a refresh and a logout at `trace` and checks the log.
async fn secrets_stay_out_of_trace_logs(redis: Option<&Redis>) {
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let key: [u8; 32] = rand::random();
    let mut toml = local_toml(&idp).replace("log_level = \"info,portcullis=debug\"", "log_level = \"trace\"");
    assert!(toml.contains("log_level = \"trace\""), "the harness's configuration changed: {toml}");
    toml.push_str(&format!("keys = [\"{}\"]\n", STANDARD.encode(key)));
    if let Some(redis) = redis {
        toml.push_str(&format!("store = \"redis\"\nredis_url = \"{}\"\n", redis.url()));
    }
    let svc = Service::start_with_env(&toml, &[("RUST_LOG", "trace")]).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);

    // Login, step by step to keep the login-attempt cookie.
    let start = client.get(format!("{}/oauth2/start", svc.url)).query(&[("rd", &home)]).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let login_cookies: Vec<String> = start
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('=').map(|(_, v)| v.to_string()))
        .filter(|v| !v.is_empty())
        .collect();
    assert!(!login_cookies.is_empty(), "no login-attempt cookie");
    let at_idp = client.get(location(&start)).send().await.unwrap();
    let callback = client.get(location(&at_idp)).send().await.unwrap();
    assert_eq!(callback.status(), StatusCode::FOUND, "{:?}", callback.text().await);
    let session_cookie = set_cookie(&callback, "_portcullis").expect("session cookie");
    let hint_cookie = set_cookie(&callback, "_portcullis_logout").expect("logout hint cookie");
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["remote-user"], "alice");

    // Refresh: the 2 s access token is due after half its life.
    idp.set_expires_in(300);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), StatusCode::OK);
    assert_eq!(idp.refresh_count().await, 1);
    assert!(svc.wait_for_log("session refreshed", Duration::from_secs(5)).await, "{}", svc.logs());

    // Logout: to the provider's end-session endpoint, and signed out here.
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);
    assert!(location(&out).starts_with(&idp.issuer), "{}", location(&out));
    assert_eq!(verify(&client, &svc.url, &home).await.status(), StatusCode::UNAUTHORIZED);
    assert!(svc.wait_for_log("logout", Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = svc.logs();

    // The log really is a trace log of all three steps.
    assert!(logs.contains("TRACE"), "not at trace level:\n{logs}");
    for event in ["login succeeded", "session refreshed", "logout"] {
        assert!(logs.contains(event), "no {event:?} in the log:\n{logs}");
    }

    let issued = idp.issued();
    assert_eq!(issued.len(), 2, "one login and one refresh");
    let session_id = Sealer::new(&[key]).open(Purpose::Session, &session_cookie).expect("the cookie opens with the key").payload;
    assert_eq!(session_id.len(), 32);

    let mut secrets: Vec<(String, String)> = vec![("client secret".into(), CLIENT_SECRET.into())];
    secrets.extend(encodings("cookie key", &key));
    secrets.push(("session cookie".into(), session_cookie.clone()));
    secrets.push(("logout hint cookie".into(), hint_cookie.clone()));
    for (i, c) in login_cookies.iter().enumerate() {
        secrets.push((format!("login-attempt cookie {i}"), c.clone()));
    }
    secrets.extend(encodings("session ID", &session_id));
    for (i, t) in issued.iter().enumerate() {
        secrets.push((format!("ID token {i}"), t.id_token.clone()));
        secrets.push((format!("ID token {i} signature"), t.id_token.rsplit('.').next().unwrap().to_string()));
        secrets.push((format!("access token {i}"), t.access_token.clone()));
        secrets.push((format!("refresh token {i}"), t.refresh_token.clone()));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, value)| logs.contains(value.as_str()))
        .map(|(label, value)| {
            let line = logs.lines().find(|l| l.contains(value.as_str())).unwrap_or("");
            format!("{label} in: {line}")
        })
        .collect();
    assert!(leaks.is_empty(), "secrets in the log ({} lines):\n{}", logs.lines().count(), leaks.join("\n"));
}

#[tokio::test]
async fn no_secret_in_trace_logs_with_the_memory_store() {
    secrets_stay_out_of_trace_logs(None).await;
}

#[tokio::test]
async fn no_secret_in_trace_logs_with_the_redis_store() {
    let Some(redis) = Redis::start().await else { return };
    secrets_stay_out_of_trace_logs(Some(&redis)).await;
}

const FORGED: [(&str, &str); 6] = [
    ("remote-user", "admin"),
    ("remote-email", "admin@example.com"),
    ("remote-name", "Administrator"),
    ("remote-groups", "admins"),
    ("remote-role", "admin"),
    ("remote-subject", "admin"),
];

/// Asks `/auth/{kind}` about `url` with forged identity headers.
async fn forged(client: &reqwest::Client, base: &str, kind: &str, url: &str) -> reqwest::Response {
    let mut req = client
        .get(format!("{base}/auth/{kind}"))
        .header("x-original-url", url)
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", url.trim_start_matches("http://").trim_end_matches('/'))
        .header("x-forwarded-uri", "/");
    for (name, value) in FORGED {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn identity_headers_from_the_client_are_never_echoed() {
    let idp = Idp::start().await;
    idp.set_user(json!({"sub": "u-bob", "preferred_username": "bob", "email": "bob@example.com", "email_verified": true, "name": "Bob", "groups": ["staff"]}));
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);

    // No session: signed out, and none of the forged headers comes back.
    for kind in ["nginx", "forward"] {
        let r = forged(&plain(), &svc.url, kind, &home).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "/auth/{kind}");
        for (name, _) in FORGED {
            assert!(r.headers().get(name).is_none(), "/auth/{kind} without a session answered {name}: {:?}", r.headers()[name]);
        }
    }

    // Bob's session: Bob's identity, one value per header, nothing of the forgery.
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), StatusCode::FOUND);
    for kind in ["nginx", "forward"] {
        let r = forged(&client, &svc.url, kind, &home).await;
        assert_eq!(r.status(), StatusCode::OK, "/auth/{kind}");
        let h = r.headers();
        for (name, forged_value) in FORGED {
            let values: Vec<_> = h.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect();
            assert!(values.len() <= 1, "/auth/{kind}: {name} answered {values:?}");
            assert!(!values.iter().any(|v| v.contains(forged_value)), "/auth/{kind}: {name} echoed {values:?}");
        }
        assert_eq!(h["remote-user"], "bob");
        assert_eq!(h["remote-email"], "bob@example.com");
        assert_eq!(h["remote-name"], "Bob");
        assert_eq!(h["remote-groups"], "staff");
        assert_eq!(h["remote-subject"], "bob");
        assert_eq!(h["remote-role"], "guest");
    }
}
