//! Running portcullis: metrics, audit logs, graceful shutdown, reloading
//! the configuration, and check-config's warnings.

mod common;

use std::time::Duration;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, location, login, plain, verify};

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test]
async fn metrics_count_verifies_logins_and_sessions() {
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    login(&client, &svc.url, &home).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    idp.refuse_next("access_denied");
    login(&browser(), &svc.url, &home).await;

    let r = plain().get(format!("{}/metrics", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert_eq!(metric(&text, "portcullis_verify_requests_total{endpoint=\"nginx\",outcome=\"allow\"}"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "portcullis_verify_requests_total{endpoint=\"nginx\",outcome=\"unauthenticated\"}"), Some(1.0));
    assert_eq!(metric(&text, "portcullis_verify_duration_seconds_count"), Some(3.0));
    assert_eq!(metric(&text, "portcullis_logins_total{outcome=\"success\",reason=\"none\"}"), Some(1.0));
    assert_eq!(metric(&text, "portcullis_logins_total{outcome=\"refused\",reason=\"provider_error\"}"), Some(1.0));
    assert_eq!(metric(&text, "portcullis_sessions_created_total"), Some(1.0));
}

#[tokio::test]
async fn metrics_can_live_on_their_own_listener() {
    let idp = Idp::start().await;
    let port = common::free_port();
    let svc = Service::start(&format!("metrics_listen = \"127.0.0.1:{port}\"\n{}", local_toml(&idp))).await;
    assert!(svc.wait_for_log("metrics on", Duration::from_secs(5)).await);
    assert_eq!(plain().get(format!("{}/metrics", svc.url)).send().await.unwrap().status(), 404);
    verify(&plain(), &svc.url, &format!("{}/", svc.url)).await;
    let r = plain().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("portcullis_verify_requests"));
}

/// Threads of `pid` named as tokio names its workers.
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap_or_default();
            comm.trim() == "tokio-rt-worker"
        })
        .count()
}

#[tokio::test]
async fn worker_threads_sets_how_many_threads_serve() {
    let idp = Idp::start().await;
    let one = Service::start(&format!("worker_threads = 1\n{}", local_toml(&idp))).await;
    let three = Service::start(&format!("worker_threads = 3\n{}", local_toml(&idp))).await;
    one.wait_ready().await;
    three.wait_ready().await;
    assert_eq!(runtime_workers(one.pid().unwrap()), 1);
    assert_eq!(runtime_workers(three.pid().unwrap()), 3);
}

#[tokio::test]
async fn json_audit_lines_carry_event_user_and_client_ip() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("log_format = \"json\"\n{}", local_toml(&idp))).await;
    svc.wait_ready().await;
    let client = browser();
    let start = client.get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let at = client.get(location(&start)).send().await.unwrap();
    let cb = client.get(location(&at)).header("x-forwarded-for", "203.0.113.9, 10.0.0.1").send().await.unwrap();
    assert_eq!(cb.status(), 302);
    assert!(svc.wait_for_log("\"event\":\"login\"", Duration::from_secs(2)).await, "{}", svc.logs());
    let line = svc.logs().lines().find(|l| l.contains("\"event\":\"login\"")).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["user"], "alice");
    assert_eq!(v["fields"]["subject"], "user-1");
    assert_eq!(v["fields"]["client_ip"], "203.0.113.9");
    for l in svc.logs().lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let idp = Idp::start().await;
    let mut svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    idp.set_token_delay(Duration::from_millis(1500));
    let client = browser();
    let start = client.get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let at = client.get(location(&start)).send().await.unwrap();
    let callback = location(&at);
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(callback).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = svc.pid().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    });
    status.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer accepted ...
    assert!(plain().get(format!("{}/healthz", svc.url)).send().await.is_err());
    // ... but the login under way completes.
    assert_eq!(in_flight.await.unwrap().unwrap(), 302);
    let exit = tokio::task::spawn_blocking(move || svc.terminate()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn sighup_reloads_policy_and_keeps_sessions_and_rejects_a_broken_file() {
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    let admin = format!("{}/admin/", svc.url);
    login(&client, &svc.url, &home).await;
    assert_eq!(verify(&client, &svc.url, &admin).await.status(), 200);

    let path = svc.dir.path().join("portcullis.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let hup = |pid: u32| {
        std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().unwrap();
    };
    std::fs::write(&path, format!("{original}\n[[policy]]\npath = \"/admin\"\naction = \"allow\"\nroles = [\"admin\"]\n")).unwrap();
    hup(svc.pid().unwrap());
    assert!(svc.wait_for_log("config_reloaded", Duration::from_secs(5)).await, "{}", svc.logs());
    assert_eq!(verify(&client, &svc.url, &admin).await.status(), 403, "the new policy applies to the existing session");
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);

    std::fs::write(&path, format!("{original}\n[[policy]]\npath = \"/admin\"\naction = \"sometimes\"\n")).unwrap();
    hup(svc.pid().unwrap());
    assert!(svc.wait_for_log("config_reload_rejected", Duration::from_secs(5)).await, "{}", svc.logs());
    assert_eq!(verify(&client, &svc.url, &admin).await.status(), 403, "the previous configuration keeps serving");
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
}

#[tokio::test]
async fn a_reload_whose_policy_reads_claims_signs_in_again_sessions_that_kept_none() {
    let idp = Idp::start().await;
    idp.set_user(serde_json::json!({"sub": "user-1", "preferred_username": "alice", "email": "alice@example.com", "department": "photos"}));
    let (svc, client, home) = common::signed_in(&idp).await;

    // No expression read claims when this session was made, so it kept
    // none beyond `sub`; the reloaded policy's expression needs one.
    let path = svc.dir.path().join("portcullis.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{original}\n[[policy]]\naction = \"allow\"\nexpr = 'claims.department == \"photos\"'\n")).unwrap();
    std::process::Command::new("kill").arg("-HUP").arg(svc.pid().unwrap().to_string()).status().unwrap();
    assert!(svc.wait_for_log("config_reloaded", Duration::from_secs(5)).await, "{}", svc.logs());
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401, "signed out, never judged on missing claims");
    assert!(svc.logs().contains("the policy now reads claims this session did not keep"), "{}", svc.logs());

    // Signing in again keeps the claims the expression reads.
    login(&client, &svc.url, &home).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    idp.set_user(serde_json::json!({"sub": "user-2", "preferred_username": "bob", "department": "finance"}));
    let other = browser();
    login(&other, &svc.url, &home).await;
    assert_eq!(verify(&other, &svc.url, &home).await.status(), 403);
}

#[test]
fn check_config_warns_about_risky_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        r#"public_url = "https://auth.example.com"
allowed_redirect_domains = [".co.uk"]
[oidc]
issuer = "http://id.example.com"
client_id = "c"
client_secret = "s"
insecure_http = true
[session]
cookie_secure = false
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["cookie_secure", "`.co.uk` looks like a public suffix", "insecure_http", "memory"] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
}
