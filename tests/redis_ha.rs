//! Redis high availability: Sentinel failover and Redis Cluster, with
//! redis-server processes of the test's own.

mod common;

use std::time::{Duration, Instant};

use common::idp::Idp;
use common::redis::{Cluster, Sentinel};
use common::service::{KEY_A, Service, local_toml};
use common::{browser, login, verify};
use serde_json::json;

/// How long portcullis may take to follow a Sentinel failover, counted
/// from the primary's death (sentinel's down-after 1 s + election + one
/// failed call to notice). The book (docs/src/sessions.md) states the same
/// bound.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);

#[tokio::test]
async fn sentinel_failover_keeps_sessions() {
    let Some(mut ha) = Sentinel::start().await else { return };
    let idp = Idp::start().await;
    // No in-process cache: every verify below really asks Redis.
    let toml = format!(
        "{}store = \"redis\"\nredis_url = \"{}\"\nkeys = [\"{KEY_A}\"]\ncache_ttl = \"0s\"\n",
        local_toml(&idp),
        ha.url()
    );
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    // Let the replica receive the session before the primary dies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ha.replica.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "replica never got the session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let died = Instant::now();
    ha.primary.stop();
    loop {
        let status = verify(&client, &svc.url, &home).await.status();
        if status == 200 {
            break;
        }
        assert!(status.is_server_error(), "verify answered {status} during the failover");
        assert!(died.elapsed() < FAILOVER_BOUND, "no failover within {FAILOVER_BOUND:?}:\n{}", svc.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The replica is now the primary, with the session; new logins work too.
    assert!(ha.replica.cli(&["ROLE"]).starts_with("master"));
    let other = browser();
    assert_eq!(login(&other, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&other, &svc.url, &home).await.status(), 200);
    eprintln!("failover followed after {:?}", died.elapsed());
}

#[tokio::test]
async fn cluster_spreads_sessions_and_all_flows_work() {
    let Some(cluster) = Cluster::start().await else { return };
    let idp = Idp::start().await;
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "{}store = \"redis\"\nredis_url = [{}]\nkeys = [\"{KEY_A}\"]\n",
        local_toml(&idp),
        urls.join(", ")
    );
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let mut clients = Vec::new();
    for i in 0..10 {
        idp.set_user(json!({"sub": format!("sub-{i}"), "preferred_username": format!("user{i}"), "sid": format!("sid-{i}")}));
        let c = browser();
        assert_eq!(login(&c, &svc.url, &home).await.status(), 302, "login {i}:\n{}", svc.logs());
        assert_eq!(verify(&c, &svc.url, &home).await.status(), 200);
        clients.push(c);
    }
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| !n.cli(&["--scan", "--pattern", "portcullis:session:*"]).trim().is_empty())
        .count();
    assert!(holding >= 2, "sessions all on one node");

    // Logout, back-channel logout and index lookups across slots.
    clients[0].get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(verify(&clients[0], &svc.url, &home).await.status(), 401);
    let r = common::plain()
        .post(format!("{}/oauth2/backchannel-logout", svc.url))
        .form(&[("logout_token", idp.logout_token(json!({"sid": "sid-3"})))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&clients[3], &svc.url, &home).await.status(), 401);
    assert_eq!(verify(&clients[4], &svc.url, &home).await.status(), 200);
}

/// Makes a CA and a certificate for 127.0.0.1 with the openssl command.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=portcullis-test-ca"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost"]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext"]);
}

#[tokio::test]
async fn tls_with_an_acl_user() {
    if !common::have_binary("redis-server") || !common::have_binary("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let port = common::free_port();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let _redis = common::redis::Proc::start(
        port,
        [
            "--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "",
            "--tls-cert-file", &p("srv.pem"), "--tls-key-file", &p("srv.key"), "--tls-ca-cert-file", &p("ca.pem"),
            "--tls-auth-clients", "no", "--user", "default", "off", "--user", "portcullis", "on", ">acl-pass-93a1", "~portcullis:*", "+@all",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    let idp = Idp::start().await;
    let config = |url: &str, ca: bool| {
        let mut t = format!("{}store = \"redis\"\nredis_url = \"{url}\"\nkeys = [\"{KEY_A}\"]\n", local_toml(&idp));
        if ca {
            t.push_str(&format!("redis_ca_file = \"{}\"\n", p("ca.pem")));
        }
        t
    };

    let svc = Service::start(&config(&format!("rediss://portcullis:acl-pass-93a1@127.0.0.1:{port}/"), true)).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);

    // A wrong password, or a certificate nobody vouches for: not ready, and
    // no password in the logs.
    for (url, ca) in [
        (format!("rediss://portcullis:wrong-pass-5521@127.0.0.1:{port}/"), true),
        (format!("rediss://portcullis:acl-pass-93a1@127.0.0.1:{port}/"), false),
    ] {
        let svc = Service::start(&config(&url, ca)).await;
        let r = common::plain().get(format!("{}/readyz", svc.url)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{url} ca={ca}");
        let logs = svc.logs();
        assert!(!logs.contains("wrong-pass-5521") && !logs.contains("acl-pass-93a1"), "{logs}");
    }
}
