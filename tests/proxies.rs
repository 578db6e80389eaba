//! The proxy examples, run for real: NGINX and Caddy started from the files
//! in `examples/` (only ports and paths changed), portcullis started from
//! `examples/portcullis.toml`, the mock identity provider, and a small app
//! that echoes the headers it receives.
//!
//! A browser (cookie jar, redirects followed one hop at a time) visits
//! `https://app.example.com` through the proxy; the example host names
//! resolve to the proxy's loopback port, and the proxy serves the test
//! certificate from `tests/fixtures/tls`, so URLs, cookies and redirects are
//! exactly those a user would see.

mod common;

use common::proxy::repo_path;
use common::stack::*;
use common::upstream::Seen;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use url::Url;

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The whole story through one proxy and layout.
async fn run(kind: ProxyKind, layout: Layout) {
    if !have(kind) {
        return;
    }
    let s = Stack::start(kind, layout).await;
    let url = DEEP_LINK;

    // Signed out, a browser is sent to sign in and comes back to the same
    // path and query; the app sees who it is.
    let browser = s.browser();
    let (session, seen) = sign_in(&s, &browser, url).await;
    assert_eq!(seen.uri, path_and_query(url), "path and query reach the app unchanged");
    assert_alice(&seen, "after sign-in");
    assert_eq!(seen.header("host"), Some(APP));

    // Headers a client sends itself never reach the app: not on a
    // protected path (portcullis's values win) ...
    let forged = [
        ("Remote-User", "mallory"),
        ("remote-email", "mallory@evil.test"),
        ("Remote-Name", "Mallory"),
        ("Remote-Groups", "admins"),
        ("Remote-Role", "admin"),
        ("Remote-Subject", "mallory"),
        ("X-Api-Key", "forged-key"),
    ];
    let mut req = browser.get("https://app.example.com/photos/");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert_alice(&Seen::parse(&r.text().await.unwrap()), "with forged headers");

    // ... nor on a `bypass` path, where portcullis sends no identity ...
    let stranger = s.browser();
    let mut req = stranger.get("https://app.example.com/public/logo.png?v=3");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a bypass path needs no sign-in\n{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(seen.uri, "/public/logo.png?v=3");
    for h in IDENTITY_HEADERS.iter().chain(&["x-api-key"]) {
        assert_eq!(seen.header(h), None, "forged {h} reached the app on a bypass path: {seen:?}");
    }

    // ... and a signed-out request with forged headers is sent to sign in.
    let before = s.app.count();
    let mut req = stranger.get("https://app.example.com/photos/");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(s.app.count(), before);

    // Signed in but not allowed (only `admins` reach /admin/): 403 from
    // the proxy, nothing reaches the app.
    let before = s.app.count();
    let r = get(&browser, "https://app.example.com/admin/users").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", s.logs());
    assert_eq!(s.app.count(), before, "a forbidden request reached the app");

    // A script (no text/html in Accept) gets 401, not a redirect.
    let script = s.script();
    let r = get(&script, "https://app.example.com/api/albums").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", s.logs());
    assert!(r.headers().get(LOCATION).is_none(), "a script was redirected: {r:?}");
    assert_eq!(s.app.count(), before);
    // With the session cookie, the same script is let in.
    let r = script
        .get("https://app.example.com/api/albums")
        .header("cookie", format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert_alice(&Seen::parse(&r.text().await.unwrap()), "script with the session cookie");

    // Sign-out ends the session: the cookie is cleared, the provider is
    // told, the next visit goes to sign in again, and the old cookie value
    // no longer opens anything.
    let deep = "https://app.example.com/photos/album?id=7&sort=date";
    let logout = format!("{}/oauth2/logout?rd={}", s.layout.public_url(), urlencode(deep));
    let r = get(&browser, &logout).await;
    assert_eq!(r.status(), StatusCode::FOUND, "logout\n{}", s.logs());
    let to = location(&r);
    assert!(to.as_str().starts_with(&format!("{}/logout?", s.idp.issuer)), "logout goes to the provider: {to}");
    // The ID token came back through the proxy in the logout hint cookie.
    let hint = to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned()).expect("id_token_hint");
    assert!(s.idp.issued().iter().any(|i| i.id_token == hint), "{hint}");
    let cleared = set_cookies(&r);
    assert!(
        cleared.iter().any(|c| c.starts_with("_portcullis=;") && c.contains("Max-Age=0")),
        "session cookie not cleared: {cleared:?}"
    );
    // The provider sends the browser back to the one registered
    // post-logout URI, through the proxy, and on to the deep URL.
    assert_eq!(
        query_param(&to, "post_logout_redirect_uri").as_deref(),
        Some(&format!("{}/oauth2/signed-out", s.layout.public_url())[..])
    );
    let mut back = Url::parse(&query_param(&to, "post_logout_redirect_uri").unwrap()).unwrap();
    back.query_pairs_mut().append_pair("state", &query_param(&to, "state").expect("state"));
    let r = get(&browser, back.as_str()).await;
    assert_eq!(r.status(), StatusCode::FOUND, "back from the provider\n{}", s.logs());
    assert_eq!(location(&r).as_str(), deep);
    // Without state (or without rd), the signed-out page.
    let r = get(&browser, &format!("{}/oauth2/signed-out", s.layout.public_url())).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert!(r.text().await.unwrap().contains("Sign in again"));
    // The sign-in host's own root is a portcullis page, not an error.
    if s.layout == Layout::AuthHost {
        let r = get(&browser, &format!("{}/", s.layout.public_url())).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{}", s.logs());
        assert_eq!(location(&r).as_str(), format!("{}/oauth2/signed-out", s.layout.public_url()));
    }

    let before = s.app.count();
    let r = get(&browser, url).await;
    assert_eq!(r.status(), StatusCode::FOUND, "signed out, yet let in\n{}", s.logs());
    let again = location(&r);
    assert!(again.as_str().starts_with(&s.start_url()), "{again}");
    let r = script
        .get("https://app.example.com/api/albums")
        .header("cookie", format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old session still opens");
    assert_eq!(s.app.count(), before);

    // Signing in again works (and lands where asked).
    let (_, seen) = sign_in(&s, &browser, "https://app.example.com/").await;
    assert_alice(&seen, "second sign-in");

    // With portcullis down, the proxy refuses everything: signed in or not,
    // protected or bypass path. Nothing reaches the app.
    let mut s = s;
    s.svc.stop();
    let before = s.app.count();
    for (client, path) in [
        (&browser, "/photos/"),
        (&stranger, "/photos/"),
        (&stranger, "/public/logo.png"),
        (&script, "/api/albums"),
    ] {
        let r = get(client, &format!("https://app.example.com{path}")).await;
        assert!(r.status().is_server_error(), "portcullis down, {path} answered {}\n{}", r.status(), s.logs());
    }
    assert_eq!(s.app.count(), before, "a request reached the app while portcullis was down");
}

#[tokio::test]
async fn nginx_with_sign_in_on_its_own_host() {
    run(ProxyKind::Nginx, Layout::AuthHost).await;
}

#[tokio::test]
async fn nginx_with_sign_in_under_the_app_host() {
    run(ProxyKind::Nginx, Layout::SameHost).await;
}

#[tokio::test]
async fn caddy_with_sign_in_on_its_own_host() {
    run(ProxyKind::Caddy, Layout::AuthHost).await;
}

#[tokio::test]
async fn caddy_with_sign_in_under_the_app_host() {
    run(ProxyKind::Caddy, Layout::SameHost).await;
}

/// The book shows the very files the tests above run, each on its page.
#[test]
fn docs_embed_the_tested_examples() {
    for (page, file) in [
        ("docs/src/proxies.md", "examples/portcullis.toml"),
        ("docs/src/proxies/nginx.md", "examples/nginx/auth-host.conf"),
        ("docs/src/proxies/nginx.md", "examples/nginx/same-host.conf"),
        ("docs/src/proxies/caddy.md", "examples/caddy/auth-host.Caddyfile"),
        ("docs/src/proxies/caddy.md", "examples/caddy/same-host.Caddyfile"),
    ] {
        let docs = std::fs::read_to_string(repo_path(page)).unwrap();
        let text = std::fs::read_to_string(repo_path(file)).unwrap();
        assert!(docs.contains(&text), "{page} does not embed {file} as it is now: paste the file into it again");
    }
}
