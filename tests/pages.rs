//! portcullis's own pages as a browser gets them: text from a claim, the
//! provider or `ui.title` arrives escaped, and every page's
//! `Content-Security-Policy` lets nothing run and nothing load but its own
//! stylesheet.

mod common;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, login};
use reqwest::Response;
use serde_json::json;

const HOSTILE: &str = "<script>alert(1)</script>";
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// The page's body, after checking it escapes [`HOSTILE`] and keeps to its
/// policy: `default-src 'none'`, its one stylesheet allowed by the nonce
/// in the header, no script, nothing from elsewhere.
async fn checked_page(r: Response, status: u16, what: &str) -> String {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8", "{what}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{what}");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(csp.starts_with("default-src 'none'; style-src 'nonce-"), "{what}: {csp}");
    assert!(!csp.contains("unsafe") && !csp.contains("script-src") && !csp.contains("http"), "{what}: {csp}");
    assert!(csp.ends_with("; frame-ancestors 'none'"), "{what}: no other site may frame it: {csp}");
    let nonce = csp.split("'nonce-").nth(1).and_then(|n| n.split('\'').next()).unwrap();
    assert!(nonce.len() >= 22, "{what}: {nonce}");
    assert_eq!(body.matches("<style").count(), 1, "{what}: {body}");
    assert!(body.contains(&format!("<style nonce=\"{nonce}\">")), "{what}: {body}");
    assert!(!body.to_ascii_lowercase().contains("<script"), "{what}: {body}");
    assert!(!body.contains(" src=\"http") && !body.contains("<link"), "{what}: nothing loads from elsewhere: {body}");
    assert!(body.contains(" · &lt;b&gt;Family&lt;/b&gt;</title>"), "{what}: ui.title escaped: {body}");
    assert!(body.contains("<span>&lt;b&gt;Family&lt;/b&gt;</span>"), "{what}: ui.title escaped: {body}");
    body
}

#[tokio::test]
async fn hostile_text_arrives_escaped_on_every_page() {
    let idp = Idp::start().await;
    idp.set_user(json!({
        "sub": "user-1",
        "preferred_username": HOSTILE,
        "email": "alice@example.com",
        "email_verified": true,
        "name": HOSTILE,
    }));
    let toml = format!("{}\n[ui]\ntitle = \"<b>Family</b>\"\n", local_toml(&idp));
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let client = browser();

    // An address that is not one.
    let r = client.get(format!("{}/oauth2/{HOSTILE}", svc.url)).send().await.unwrap();
    let body = checked_page(r, 404, "not found").await;
    assert!(body.contains("<h1>Not found</h1>"), "{body}");

    // What the provider says, in the callback's `error`.
    let r = client.get(format!("{}/oauth2/callback", svc.url)).query(&[("error", HOSTILE), ("state", "x")]).send().await.unwrap();
    let body = checked_page(r, 400, "provider error").await;
    assert!(body.contains(&format!("refused the sign-in ({ESCAPED})")), "{body}");

    // A claim: the user name on the signed-in page.
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = client.get(format!("{}/oauth2/signed-out", svc.url)).send().await.unwrap();
    let body = checked_page(r, 200, "signed in").await;
    assert!(body.contains(&format!("You are signed in as {ESCAPED}.")), "{body}");

    // The sign-out confirmation a cross-site request gets.
    let r = client
        .get(format!("{}/oauth2/logout", svc.url))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    let body = checked_page(r, 200, "confirm sign-out").await;
    assert!(body.contains("<form method=\"post\">") && body.contains("name=\"token\""), "{body}");

    // Scripts still get JSON, not pages.
    let r = common::plain().get(format!("{}/oauth2/nowhere", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
}
