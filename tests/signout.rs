//! Sign-out as a browser meets it: the return URL travels through the
//! provider in the RP-Initiated Logout `state` to the one registered
//! post-logout URI (`/oauth2/signed-out`); logout CSRF (a cross-site
//! request only gets a confirmation page); signing out everywhere; and a
//! provider without an `end_session_endpoint`.

mod common;

use std::collections::HashMap;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, location, login, verify};
use reqwest::Client;
use serde_json::json;

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

fn query(u: &str) -> HashMap<String, String> {
    url::Url::parse(u).unwrap().query_pairs().into_owned().collect()
}

async fn service(idp: &Idp) -> Service {
    let svc = Service::start(&local_toml(idp)).await;
    svc.wait_ready().await;
    svc
}

/// A browser signed in to `svc`.
async fn signed_in(svc: &Service) -> (Client, String) {
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    (client, home)
}

/// Where the provider would send the browser back: the post-logout URI of
/// the logout redirect `to`, with its `state` (or without, for providers
/// that drop it).
fn back_from_provider(to: &str, keep_state: bool) -> String {
    let q = query(to);
    let mut back = url::Url::parse(&q["post_logout_redirect_uri"]).unwrap();
    if keep_state {
        back.query_pairs_mut().append_pair("state", &q["state"]);
    }
    back.to_string()
}

#[tokio::test]
async fn the_return_url_travels_through_the_provider_to_the_one_registered_uri() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let (client, home) = signed_in(&svc).await;
    let deep = format!("{}/photos/album?id=7&sort=date", svc.url);

    let out = client.get(format!("{}/oauth2/logout", svc.url)).query(&[("rd", &deep)]).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let to = location(&out);
    assert!(to.starts_with(&format!("{}/logout?", idp.issuer)), "{to}");
    let q = query(&to);
    // The provider sees only the registered URI; the deep URL is sealed in state.
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/oauth2/signed-out", svc.url));
    assert!(!to.contains("photos"), "the return URL is readable in {to}");
    assert!(q["state"].len() > 40, "{to}");
    let nonce = set_cookies(&out).into_iter().find(|c| c.starts_with("_portcullis_signout=")).expect("sign-out cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/oauth2/signed-out", "Max-Age=600"] {
        assert!(nonce.contains(attr), "{attr} missing in {nonce}");
    }
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);

    // Another browser holding the same state (a link passed around) does
    // not get redirected: it lands on the signed-out page.
    let stranger = browser().get(back_from_provider(&to, true)).send().await.unwrap();
    assert_eq!(stranger.status(), 200);
    assert!(stranger.text().await.unwrap().contains("You are signed out."));
    // A tampered state neither.
    let mut tampered = back_from_provider(&to, true);
    tampered.insert(tampered.len() - 3, 'A');
    let r = client.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.headers().get("location"));

    // The browser that signed out goes on to the deep URL, and its nonce
    // cookie is cleared.
    let back = client.get(back_from_provider(&to, true)).send().await.unwrap();
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), deep);
    assert!(set_cookies(&back).iter().any(|c| c.starts_with("_portcullis_signout=;") && c.contains("Max-Age=0")));
    assert_eq!(back.headers()["cache-control"], "no-store");
    // Spent: the same state again ends on the page.
    let again = client.get(back_from_provider(&to, true)).send().await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn without_rd_or_when_the_provider_drops_state_sign_out_ends_on_the_signed_out_page() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let (client, _) = signed_in(&svc).await;
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let to = location(&out);
    let page = client.get(back_from_provider(&to, true)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let body = page.text().await.unwrap();
    assert!(body.contains("<h1>Signed out</h1>") && body.contains("You are signed out."), "{body}");
    assert!(body.contains(&format!(" href=\"{}/oauth2/start\">Sign in again</a>", svc.url)), "{body}");

    // A provider that drops state: the page too, even with rd asked for.
    let (client, _) = signed_in(&svc).await;
    let out = client.get(format!("{}/oauth2/logout", svc.url)).query(&[("rd", &format!("{}/x", svc.url))]).send().await.unwrap();
    let page = client.get(back_from_provider(&location(&out), false)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign in again"));

    // A signed-in browser at the page is told so, with a sign-out link.
    let (client, _) = signed_in(&svc).await;
    let page = client.get(format!("{}/oauth2/signed-out", svc.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("You are signed in as alice.") && body.contains("/oauth2/logout\">Sign out</a>"), "{body}");
}

#[tokio::test]
async fn without_an_end_session_endpoint_sign_out_goes_straight_to_rd_or_the_page() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let idp = Idp::start().await;
    let issuer = idp.issuer.clone();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        })))
        .with_priority(1)
        .mount(&idp.server)
        .await;
    let svc = service(&idp).await;
    let (client, home) = signed_in(&svc).await;
    let deep = format!("{}/photos/album?id=7", svc.url);
    let out = client.get(format!("{}/oauth2/logout", svc.url)).query(&[("rd", &deep)]).send().await.unwrap();
    assert_eq!(out.status(), 302);
    assert_eq!(location(&out), deep);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);

    let (client, home) = signed_in(&svc).await;
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert!(out.text().await.unwrap().contains("Sign in again"));
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
}

/// A logout request as a browser sends it, with fetch metadata.
async fn logout_with(client: &Client, svc: &Service, site: &str, dest: &str) -> reqwest::Response {
    client
        .get(format!("{}/oauth2/logout", svc.url))
        .header("sec-fetch-site", site)
        .header("sec-fetch-dest", dest)
        .header("sec-fetch-mode", if dest == "document" { "navigate" } else { "no-cors" })
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cross_site_logout_only_gets_a_confirmation_page() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let (client, home) = signed_in(&svc).await;

    // An <img>, an iframe, a cross-site link: the session stays.
    for (site, dest) in [("cross-site", "image"), ("same-site", "image"), ("same-origin", "iframe"), ("cross-site", "document")] {
        let r = logout_with(&client, &svc, site, dest).await;
        assert_eq!(r.status(), 200, "{site} {dest}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';") && csp.ends_with("frame-ancestors 'none'"), "{csp}");
        assert!(set_cookies(&r).is_empty(), "{site} {dest}: {:?}", set_cookies(&r));
        let body = r.text().await.unwrap();
        assert!(body.contains("<form method=\"post\">") && body.contains("name=\"token\""), "{body}");
        assert_eq!(verify(&client, &svc.url, &home).await.status(), 200, "{site} {dest} signed out");
    }
    // A cross-site form posting without the token: the page again.
    let r = client
        .post(format!("{}/oauth2/logout", svc.url))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-dest", "document")
        .form(&[("token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200, "a forged token signed out");

    // Another browser's token does not sign this one out.
    let (other, other_home) = signed_in(&svc).await;
    let page = logout_with(&other, &svc, "cross-site", "document").await.text().await.unwrap();
    let others_token = token_in(&page);
    let r = client
        .post(format!("{}/oauth2/logout", svc.url))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-dest", "document")
        .form(&[("token", &others_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200, "another session's token signed out");

    // The button on its own page does: its token alone suffices (sent here
    // with cross-site metadata, which alone would only get the page again).
    let page = logout_with(&client, &svc, "cross-site", "document").await.text().await.unwrap();
    let r = client
        .post(format!("{}/oauth2/logout", svc.url))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-dest", "document")
        .form(&[("token", &token_in(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    assert_eq!(verify(&other, &svc.url, &other_home).await.status(), 200);
}

fn token_in(page: &str) -> String {
    let from = page.find("name=\"token\" value=\"").expect("a token") + "name=\"token\" value=\"".len();
    page[from..from + page[from..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn a_sign_out_link_typed_address_or_script_signs_out_at_once() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    for (site, dest) in [("same-origin", "document"), ("same-site", "document"), ("none", "document")] {
        let (client, home) = signed_in(&svc).await;
        let r = logout_with(&client, &svc, site, dest).await;
        assert_eq!(r.status(), 302, "{site} {dest}");
        assert_eq!(verify(&client, &svc.url, &home).await.status(), 401, "{site} {dest}");
    }
    // No fetch metadata at all: a script, an old client.
    let (client, home) = signed_in(&svc).await;
    assert_eq!(client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap().status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_of_that_person_and_says_how_many() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    idp.set_user(json!({"sub": "sub-alice", "preferred_username": "alice"}));
    let (laptop, home) = signed_in(&svc).await;
    let (phone, _) = signed_in(&svc).await;
    let (tablet, _) = signed_in(&svc).await;
    idp.set_user(json!({"sub": "sub-bob", "preferred_username": "bob"}));
    let (bob, _) = signed_in(&svc).await;

    // Cross-site, it asks first, and says what it will do.
    let r = logout_with(&laptop, &svc, "cross-site", "document").await;
    assert_eq!(r.status(), 200);
    let r = laptop
        .get(format!("{}/oauth2/logout?everywhere=1", svc.url))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-dest", "image")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign out everywhere"));
    assert_eq!(verify(&phone, &svc.url, &home).await.status(), 200);

    let out = laptop.get(format!("{}/oauth2/logout?everywhere=1", svc.url)).send().await.unwrap();
    assert_eq!(out.status(), 302);
    for c in [&laptop, &phone, &tablet] {
        assert_eq!(verify(c, &svc.url, &home).await.status(), 401);
    }
    assert_eq!(verify(&bob, &svc.url, &home).await.status(), 200, "another person was signed out");
    let page = laptop.get(back_from_provider(&location(&out), true)).send().await.unwrap();
    let body = page.text().await.unwrap();
    assert!(body.contains("You are signed out: 3 sessions ended."), "{body}");
    assert!(svc.logs().contains("sessions_ended=3"), "{}", svc.logs());
}
