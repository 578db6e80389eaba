//! What portcullis judges is what the app serves: the request view, asked
//! of a real portcullis directly, the way a proxy (or a client the proxy
//! lets through) could ask it. Each case is a way some app or proxy reads a
//! request differently from a naive reading; each must be refused (400) or
//! decided as the app will serve it.

mod common;

use common::idp::Idp;
use reqwest::{Client, StatusCode};
use serde_json::json;

const POLICY: &str = r#"
[[policy]]
host = "app.example.com"
path = "/public/"
action = "bypass"

# The old shipped form, with the slash: it must protect /admin too.
[[policy]]
host = "app.example.com"
path = "/admin/"
action = "allow"
groups = ["admins"]

[[policy]]
host = "app.example.com"
path = "/share"
methods = ["GET"]
action = "bypass"

[[policy]]
host = "expr.example.com"
action = "allow"
expr = '!request.path.startsWith("/admin") && request.raw_path != "//raw"'
"#;

/// The service with [`POLICY`], and a browser signed in as bob (not in
/// `admins`).
async fn start() -> (Idp, common::service::Service, Client) {
    let idp = Idp::start().await;
    idp.set_user(json!({"sub": "u-bob", "preferred_username": "bob", "email": "bob@example.com", "email_verified": true, "groups": ["family"]}));
    let (svc, client, _) = common::signed_in_with(&(common::service::local_toml(&idp) + POLICY)).await;
    (idp, svc, client)
}

/// The service with [`POLICY`] and `trusted_proxies`, nobody signed in.
async fn start_trusting(trusted: &str) -> (Idp, common::service::Service) {
    let idp = Idp::start().await;
    let toml = common::service::local_toml(&idp).replacen("log_level", &format!("trusted_proxies = {trusted}\nlog_level"), 1);
    let svc = common::service::Service::start(&(toml + POLICY)).await;
    svc.wait_ready().await;
    (idp, svc)
}

/// Asks `/auth/nginx` (`nginx`) or `/auth/forward` with these headers.
async fn ask(client: &Client, svc: &common::service::Service, nginx: bool, headers: &[(&str, &str)]) -> StatusCode {
    let endpoint = if nginx { "/auth/nginx" } else { "/auth/forward" };
    let mut req = client.get(format!("{}{endpoint}", svc.url)).header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn every_reading_of_a_request_is_judged() {
    let (_idp, svc, bob) = start().await;
    let anon = common::plain();
    let url = |path: &str| format!("https://app.example.com{path}");
    let nginx = |client: &Client, path: &str| {
        let (client, url, svc) = (client.clone(), url(path), &svc);
        async move { ask(&client, svc, true, &[("x-original-url", &url), ("x-original-method", "GET")]).await }
    };

    // Traversal out of a bypass, in every spelling: refused before any rule.
    for path in [
        "/public/..%2fadmin/x", "/public/..;/admin/x", "/public/%2e%2e%2fadmin/x", "/public/..%5cadmin/x",
        "/public/..%5Cadmin/x", "/public/x#/../../admin/x", "/public/%252e%252e/admin/x", "/public/..%00/admin",
        "/public/.. /admin", "/admin%00", "/admin%zz",
    ] {
        assert_eq!(nginx(&anon, path).await, StatusCode::BAD_REQUEST, "{path}\n{}", svc.logs());
        assert_eq!(nginx(&bob, path).await, StatusCode::BAD_REQUEST, "{path}");
    }
    // Paths an app serves as its admin area, asked by someone not in
    // `admins`: the protecting rule applies to every reading.
    for path in [
        "/admin", "/admin/", "/admin/x", "/admin%2Fx", "/admin%2fx", "/admin%5Cx", "/ADMIN/x", "/Admin", "/admin./x",
        "/admin;jsessionid=1/x", "/admin;x", "/%61dmin/x", "//admin/x", "/admin%20/x",
    ] {
        assert_eq!(nginx(&bob, path).await, StatusCode::FORBIDDEN, "{path}\n{}", svc.logs());
        assert_eq!(nginx(&anon, path).await, StatusCode::UNAUTHORIZED, "{path}");
    }
    // A bypass applies only when every reading is inside it.
    for (path, want) in [
        ("/public/x", StatusCode::OK),
        ("/public/a%20b", StatusCode::OK),
        ("/public/x?next=/../admin/x", StatusCode::OK),
        ("/public%2Fx", StatusCode::UNAUTHORIZED),
        ("/PUBLIC/x", StatusCode::UNAUTHORIZED),
        ("/public;x/y", StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(nginx(&anon, path).await, want, "{path}");
    }

    // Host: case, a trailing dot and a port are the same host.
    for host in ["app.example.com.", "APP.example.com", "app.example.com:8443", "app.example.com.:443"] {
        let h = [("x-forwarded-host", host), ("x-forwarded-uri", "/admin/x"), ("x-forwarded-method", "GET")];
        assert_eq!(ask(&bob, &svc, false, &h).await, StatusCode::FORBIDDEN, "{host}");
        let u = format!("https://{host}/admin/x");
        assert_eq!(ask(&bob, &svc, true, &[("x-original-url", &u)]).await, StatusCode::FORBIDDEN, "{u}");
    }

    // A proxy that sets X-Forwarded-* (as for other forward-auth services)
    // and passes a client's X-Original-URL on: the two disagree, 400.
    let forged = [
        ("x-original-url", "https://app.example.com/public/x"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-uri", "/admin/x"),
        ("x-forwarded-method", "GET"),
    ];
    assert_eq!(ask(&anon, &svc, true, &forged).await, StatusCode::BAD_REQUEST);
    // Both sets naming the same request are fine.
    let agreeing = [("x-original-url", "https://app.example.com/public/x?a=1"), ("x-forwarded-host", "app.example.com"), ("x-forwarded-uri", "/public/x?a=1")];
    assert_eq!(ask(&anon, &svc, true, &agreeing).await, StatusCode::OK);
    for (a, b) in [("https", "http"), ("app.example.com", "other.example.com")] {
        let h = if a == "https" { "x-forwarded-proto" } else { "x-forwarded-host" };
        let headers = [("x-original-url", "https://app.example.com/public/x"), (h, b)];
        assert_eq!(ask(&anon, &svc, true, &headers).await, StatusCode::BAD_REQUEST, "{h}: {b}");
    }
    // A header sent twice with different values, or a list that disagrees.
    let mut req = anon.get(format!("{}/auth/nginx", svc.url));
    req = req.header("x-original-url", "https://app.example.com/public/x").header("x-original-url", "https://app.example.com/admin/x");
    assert_eq!(req.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let h = [("x-forwarded-host", "app.example.com, evil.example.com"), ("x-forwarded-uri", "/public/x")];
    assert_eq!(ask(&anon, &svc, false, &h).await, StatusCode::BAD_REQUEST);

    // Methods: the reported one, never the verify request's own; two
    // reports that disagree, or one that is not a token, are 400.
    let share = [("x-original-url", "https://app.example.com/share")];
    let with = |m: &'static [(&'static str, &'static str)]| share.iter().chain(m).copied().collect::<Vec<_>>();
    assert_eq!(ask(&anon, &svc, true, &with(&[("x-original-method", "GET")])).await, StatusCode::OK);
    assert_eq!(ask(&anon, &svc, true, &with(&[("x-original-method", "M-SEARCH")])).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ask(&anon, &svc, true, &with(&[("x-original-method", "VERSION-CONTROL")])).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ask(&anon, &svc, true, &with(&[("x-original-method", "GE T")])).await, StatusCode::BAD_REQUEST);
    assert_eq!(ask(&anon, &svc, true, &with(&[("x-original-method", "OPTIONS"), ("x-forwarded-method", "DELETE")])).await, StatusCode::BAD_REQUEST);
    // Not reported at all: any method could be meant, so no GET-only bypass.
    assert_eq!(ask(&anon, &svc, true, &share).await, StatusCode::UNAUTHORIZED);

    // Expressions see the normalised path as request.path and the raw one
    // as request.raw_path.
    for (path, want) in [("/photos", StatusCode::OK), ("//admin", StatusCode::FORBIDDEN), ("/%61dmin", StatusCode::FORBIDDEN), ("//raw", StatusCode::FORBIDDEN), ("/raw", StatusCode::OK)] {
        let u = format!("https://expr.example.com{path}");
        assert_eq!(ask(&bob, &svc, true, &[("x-original-url", &u), ("x-original-method", "GET")]).await, want, "{path}");
    }
}

#[tokio::test]
async fn only_trusted_proxies_may_ask() {
    let (_idp, mut svc) = start_trusting(r#"["10.0.0.0/8", "192.0.2.1"]"#).await;
    let anon = common::plain();
    let h = [("x-original-url", "https://app.example.com/public/x")];
    for _ in 0..3 {
        assert_eq!(ask(&anon, &svc, true, &h).await, StatusCode::FORBIDDEN);
        assert_eq!(ask(&anon, &svc, false, &[("x-forwarded-host", "app.example.com")]).await, StatusCode::FORBIDDEN);
    }
    // Sign-in pages are not verify endpoints: they still answer.
    assert_eq!(common::plain().get(format!("{}/oauth2/userinfo", svc.url)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    svc.stop();
    let logs = svc.logs();
    assert_eq!(logs.matches("event=\"untrusted_peer\"").count() + logs.matches("event=untrusted_peer").count(), 1, "logged once per peer:\n{logs}");
    assert!(logs.contains("127.0.0.1"), "{logs}");

    // The peer in the list is answered as usual.
    let (_idp, svc) = start_trusting(r#"["127.0.0.0/8"]"#).await;
    assert_eq!(ask(&anon, &svc, true, &h).await, StatusCode::OK, "{}", svc.logs());
}

#[test]
fn check_config_warns_about_an_open_listen_without_trusted_proxies() {
    let toml = |top: &str| {
        format!(
            "listen = \"0.0.0.0:4180\"\n{top}\npublic_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        )
    };
    let warned = |text: String| {
        let c = portcullis::Config::from_toml_str(&text).unwrap();
        c.warnings().iter().any(|w| w.contains("trusted_proxies"))
    };
    assert!(warned(toml("")));
    assert!(!warned(toml("trusted_proxies = [\"10.88.0.0/16\"]")));
    let err = portcullis::Config::from_toml_str(&toml("trusted_proxies = [\"10.0.0.0/33\"]")).unwrap_err().to_string();
    assert!(err.contains("trusted_proxies[0]") && err.contains("10.0.0.0/33"), "{err}");
}
