//! Shared helpers for the integration tests: a mock identity provider,
//! the portcullis binary, real Redis, real NGINX and Caddy with an echoing
//! app behind them, a browser-like HTTP client, and headless Chromium.
#![allow(dead_code)]

pub mod graph;
pub mod idp;
pub mod proxy;
pub mod readings;
pub mod redis;
pub mod service;
pub mod stack;
pub mod tokens;
pub mod upstream;
pub mod webdriver;

use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Client, Response, StatusCode};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `name` is on PATH. Under `CI=true` a missing binary panics, so
/// CI never silently skips; elsewhere the test notes it and skips.
pub fn have_binary(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is required under CI=true (scripts/test installs it)");
        }
        eprintln!("skipping: {name} is not installed (scripts/test installs it)");
    }
    found
}

/// A browser: keeps cookies, does not follow redirects (tests follow them
/// hop by hop), asks for HTML.
pub fn browser() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(ACCEPT, "text/html,application/xhtml+xml".parse().unwrap());
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A client without cookies or redirects (a script, a health checker).
pub fn plain() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(20)).build().unwrap()
}

pub fn location(r: &Response) -> String {
    r.headers().get(LOCATION).unwrap_or_else(|| panic!("no Location in {r:?}")).to_str().unwrap().to_string()
}

/// Follows the login from `/oauth2/start?rd=...` through the provider and
/// returns the callback's response (302 to `rd` when the login succeeded).
pub async fn login(client: &Client, base: &str, rd: &str) -> Response {
    let start = client.get(format!("{base}/oauth2/start")).query(&[("rd", rd)]).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::FOUND, "start: {:?}", start.text().await);
    let to_idp = location(&start);
    let at_idp = client.get(&to_idp).send().await.unwrap();
    assert_eq!(at_idp.status(), StatusCode::FOUND, "provider did not redirect back: {:?}", at_idp.text().await);
    let callback = location(&at_idp);
    client.get(&callback).send().await.unwrap()
}

/// Asks `/auth/nginx` about `url` with the client's cookies.
pub async fn verify(client: &Client, base: &str, url: &str) -> Response {
    client.get(format!("{base}/auth/nginx")).header("x-original-url", url).send().await.unwrap()
}

/// The service with the test's usual settings for `idp`, ready, and a
/// browser signed in to it (checked with a verify of the home URL, which
/// is returned too).
pub async fn signed_in(idp: &idp::Idp) -> (service::Service, Client, String) {
    signed_in_with(&service::local_toml(idp)).await
}

/// As [`signed_in`], with the configuration `toml`.
pub async fn signed_in_with(toml: &str) -> (service::Service, Client, String) {
    let svc = service::Service::start(toml).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    login(&client, &svc.url, &home).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    (svc, client, home)
}
