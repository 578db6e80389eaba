//! The whole login flow through the mock provider, on the memory store:
//! start → provider → callback → verify → logout, and every way a login
//! must be refused.

mod common;

use std::time::Duration;

use common::idp::{Idp, now};
use common::service::{Service, local_toml};
use common::{browser, location, login, plain, verify};
use serde_json::json;

async fn service(idp: &Idp) -> Service {
    let svc = Service::start(&local_toml(idp)).await;
    svc.wait_ready().await;
    svc
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

fn session_cookie_set(r: &reqwest::Response) -> bool {
    set_cookies(r).iter().any(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;"))
}

#[tokio::test]
async fn full_flow_sets_headers_then_logout_signs_out() {
    let idp = Idp::start().await;
    idp.set_user(json!({
        "sub": "u-alice", "preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
        "name": "Alice Liddell", "groups": ["family", "photos"]
    }));
    let svc = service(&idp).await;
    let client = browser();
    let original = format!("{}/photos/album?id=7&sort=date", svc.url);

    // Not signed in yet.
    let r = verify(&client, &svc.url, &original).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");

    // /oauth2/start sends the browser to the provider with state, nonce, PKCE.
    let start = client.get(format!("{}/oauth2/start", svc.url)).query(&[("rd", &original)]).send().await.unwrap();
    assert_eq!(start.status(), 302);
    assert_eq!(start.headers()["cache-control"], "no-store");
    let to_idp = url::Url::parse(&location(&start)).unwrap();
    assert!(to_idp.as_str().starts_with(&format!("{}/authorize", idp.issuer)));
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], format!("{}/oauth2/callback", svc.url));
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16);
    let login_cookie = set_cookies(&start).into_iter().find(|c| c.starts_with("_portcullis_login_")).unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("Max-Age=600"), "{login_cookie}");

    // The provider approves; the callback creates the session.
    let at_idp = client.get(to_idp).send().await.unwrap();
    let cb = client.get(location(&at_idp)).send().await.unwrap();
    assert_eq!(cb.status(), 302);
    assert_eq!(location(&cb), original);
    let session = set_cookies(&cb).into_iter().find(|c| c.starts_with("_portcullis=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(session.contains(attr), "{attr} missing in {session}");
    }
    assert!(!session.contains("Secure"), "cookie_secure = false: {session}");
    // The ID token waits for the logout in a cookie sent only there.
    let hint = set_cookies(&cb).into_iter().find(|c| c.starts_with("_portcullis_logout=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/oauth2/logout", "Max-Age=43200"] {
        assert!(hint.contains(attr), "{attr} missing in {hint}");
    }
    let id_token = idp.issued().last().unwrap().id_token.clone();
    assert!(!hint.contains(&id_token), "the hint is sealed: {hint}");
    // The login cookie is spent.
    assert!(set_cookies(&cb).iter().any(|c| c.starts_with("_portcullis_login_") && c.contains("Max-Age=0")));

    let r = verify(&client, &svc.url, &original).await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["remote-user"], "alice");
    assert_eq!(h["remote-email"], "alice@example.com");
    assert_eq!(h["remote-name"], "Alice Liddell");
    assert_eq!(h["remote-groups"], "family,photos");
    assert_eq!(h["remote-role"], "guest");
    assert_eq!(h["cache-control"], "no-store");

    let info: serde_json::Value = client.get(format!("{}/oauth2/userinfo", svc.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["user"], "alice");
    assert_eq!(info["groups"], json!(["family", "photos"]));

    // Logout: the session is gone, the cookie cleared, and the browser goes
    // on to the provider's end_session_endpoint with the ID token hint.
    let out = client.get(format!("{}/oauth2/logout", svc.url)).query(&[("rd", &format!("{}/bye", svc.url))]).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let to = url::Url::parse(&location(&out)).unwrap();
    assert!(to.as_str().starts_with(&format!("{}/logout", idp.issuer)), "{to}");
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    // The one registered post-logout URI; the return URL travels sealed in state.
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/oauth2/signed-out", svc.url));
    assert!(!q["state"].is_empty());
    assert_eq!(q["id_token_hint"], id_token);
    assert_eq!(q["client_id"], "portcullis-test");
    assert!(set_cookies(&out).iter().any(|c| c.starts_with("_portcullis=;") && c.contains("Max-Age=0")));
    assert!(set_cookies(&out).iter().any(|c| c.starts_with("_portcullis_logout=;") && c.contains("Path=/oauth2/logout") && c.contains("Max-Age=0")));
    assert_eq!(verify(&client, &svc.url, &original).await.status(), 401);
    let info = client.get(format!("{}/oauth2/userinfo", svc.url)).send().await.unwrap();
    assert_eq!(info.status(), 401);

    let logs = svc.logs();
    assert!(logs.contains("event=\"login\"") || logs.contains("event=login"), "{logs}");
    assert!(logs.contains("event=\"logout\"") || logs.contains("event=logout"), "{logs}");
}

/// The provider's logout URL a logout sent with exactly `cookies` leads to.
async fn logout_hint_sent(svc: &Service, cookies: &str) -> Option<String> {
    let out = plain().get(format!("{}/oauth2/logout", svc.url)).header("cookie", cookies).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let to = url::Url::parse(&location(&out)).unwrap();
    to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned())
}

fn cookie_pair(r: &reqwest::Response, name: &str) -> String {
    set_cookies(r).into_iter().find(|c| c.starts_with(&format!("{name}="))).unwrap().split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn logout_hint_is_used_only_with_its_own_session() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let home = format!("{}/", svc.url);
    let pair = |r: &reqwest::Response| format!("{}; {}", cookie_pair(r, "_portcullis"), cookie_pair(r, "_portcullis_logout"));
    let own = login(&browser(), &svc.url, &home).await;
    let own_token = idp.issued().last().unwrap().id_token.clone();
    assert_eq!(logout_hint_sent(&svc, &pair(&own)).await, Some(own_token));

    let a = login(&browser(), &svc.url, &home).await;
    let b = login(&browser(), &svc.url, &home).await;
    // A hint alone (no session) is not sent.
    assert_eq!(logout_hint_sent(&svc, &cookie_pair(&a, "_portcullis_logout")).await, None);
    // B's hint with A's session: A is signed out without any hint.
    let mixed = format!("{}; {}", cookie_pair(&a, "_portcullis"), cookie_pair(&b, "_portcullis_logout"));
    assert_eq!(logout_hint_sent(&svc, &mixed).await, None);
    // A tampered hint is ignored.
    let b_hint = cookie_pair(&b, "_portcullis_logout");
    let tampered = format!("{}; {}x", cookie_pair(&b, "_portcullis"), &b_hint[..b_hint.len() - 1]);
    assert_eq!(logout_hint_sent(&svc, &tampered).await, None);
}

#[tokio::test]
async fn a_large_id_token_waits_for_the_logout_in_two_cookies() {
    let idp = Idp::start().await;
    // Some providers put many groups in the ID token.
    let groups: Vec<String> = (0..80).map(|i| format!("group-with-a-long-name-{i:04}")).collect();
    idp.set_user(json!({"sub": "user-1", "preferred_username": "alice", "email": "alice@example.com", "groups": groups}));
    let svc = service(&idp).await;
    let home = format!("{}/", svc.url);
    let names = ["_portcullis_logout", "_portcullis_logout_1"];
    let pairs = |r: &reqwest::Response| names.map(|n| cookie_pair(r, n));

    // Each piece belongs to its session and its place: with a piece from
    // another session, the pieces swapped, or one missing, the logout sends
    // no hint (each case signs a fresh session out).
    let other = pairs(&login(&browser(), &svc.url, &home).await);
    let cases: [fn(&[String; 2], &[String; 2]) -> Vec<String>; 3] = [
        |own, other| vec![own[0].clone(), other[1].clone()],
        |own, _| vec![format!("_portcullis_logout={}", own[1].split_once('=').unwrap().1), format!("_portcullis_logout_1={}", own[0].split_once('=').unwrap().1)],
        |own, _| vec![own[0].clone()],
    ];
    for case in cases {
        let victim = login(&browser(), &svc.url, &home).await;
        let hint = case(&pairs(&victim), &other);
        let cookies = format!("{}; {}", cookie_pair(&victim, "_portcullis"), hint.join("; "));
        assert_eq!(logout_hint_sent(&svc, &cookies).await, None, "{hint:?}");
    }

    // The whole hint, from the browser's own cookies: the provider gets the
    // ID token, and every piece is cleared.
    let client = browser();
    let cb = login(&client, &svc.url, &home).await;
    let id_token = idp.issued().last().unwrap().id_token.clone();
    assert!(id_token.len() > 3000, "{}", id_token.len());
    let hints: Vec<String> = set_cookies(&cb).into_iter().filter(|c| c.starts_with("_portcullis_logout")).collect();
    assert_eq!(hints.iter().map(|c| c.split('=').next().unwrap()).collect::<Vec<_>>(), names, "{hints:?}");
    for hint in &hints {
        assert!(hint.len() < 4000 && hint.contains("Path=/oauth2/logout") && hint.contains("HttpOnly"), "{hint}");
        assert!(!hint.contains(&id_token[..40]), "the hint is sealed: {hint}");
    }
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    let to = url::Url::parse(&location(&out)).unwrap();
    assert_eq!(to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned()), Some(id_token));
    for name in names {
        assert!(
            set_cookies(&out).iter().any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0")),
            "{name} not cleared: {:?}",
            set_cookies(&out)
        );
    }
}

#[tokio::test]
async fn an_id_token_too_large_for_a_few_cookies_is_kept_with_the_session() {
    let idp = Idp::start().await;
    let groups: Vec<String> = (0..150).map(|i| format!("group-with-a-long-name-{i:04}")).collect();
    idp.set_user(json!({"sub": "user-1", "preferred_username": "alice", "email": "alice@example.com", "groups": groups}));
    let svc = service(&idp).await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 302);
    assert!(!set_cookies(&cb).iter().any(|c| c.starts_with("_portcullis_logout")), "{:?}", set_cookies(&cb));
    let id_token = idp.issued().last().unwrap().id_token.clone();
    assert!(id_token.len() > 2 * 2700, "{}", id_token.len());
    let out = client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    let to = url::Url::parse(&location(&out)).unwrap();
    assert_eq!(to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned()), Some(id_token));
}

/// Checks a `Set-Cookie` value against the rules browsers apply to cookie
/// name prefixes, and returns its name, value, path and whether it clears.
fn prefix_checked(c: &str) -> (String, String, String, bool) {
    let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
    let (name, value) = pair.split_once('=').unwrap();
    let attrs: Vec<String> = attrs.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    let secure = attrs.iter().any(|a| a == "secure");
    let domain = attrs.iter().any(|a| a.starts_with("domain="));
    let path = attrs.iter().find_map(|a| a.strip_prefix("path=")).unwrap_or("/").to_string();
    if name.starts_with("__Host-") {
        assert!(secure && !domain && path == "/", "a browser refuses {c}");
    }
    if name.starts_with("__Secure-") {
        assert!(secure, "a browser refuses {c}");
    }
    (name.to_string(), value.to_string(), path, attrs.iter().any(|a| a == "max-age=0"))
}

/// A browser's cookie jar that keeps only cookies valid for their name's
/// prefix (and fails the test on any other), scoped by path.
#[derive(Default)]
struct StrictJar(std::collections::BTreeMap<(String, String), String>);

impl StrictJar {
    fn take(&mut self, r: &reqwest::Response) {
        for c in set_cookies(r) {
            let (name, value, path, clear) = prefix_checked(&c);
            if clear {
                self.0.remove(&(name, path));
            } else {
                self.0.insert((name, path), value);
            }
        }
    }

    fn header(&self, url: &str) -> String {
        let path = url::Url::parse(url).unwrap().path().to_string();
        let sent: Vec<String> =
            self.0.iter().filter(|((_, p), _)| path.starts_with(p.as_str())).map(|((n, _), v)| format!("{n}={v}")).collect();
        sent.join("; ")
    }

    async fn get(&mut self, url: &str, original: Option<&str>) -> reqwest::Response {
        let mut req = plain().get(url).header("cookie", self.header(url)).header("accept", "text/html");
        if let Some(o) = original {
            req = req.header("x-original-url", o);
        }
        let r = req.send().await.unwrap();
        self.take(&r);
        r
    }
}

/// `__Host-` names demand Path=/, Secure and no Domain; `__Secure-` names
/// demand Secure. A browser drops any cookie that breaks this, so every
/// cookie of a sign-in and sign-out must keep to it, or the sign-in never
/// completes ("Sign-in expired").
#[tokio::test]
async fn a_host_prefixed_cookie_name_keeps_every_cookie_valid_through_login_and_logout() {
    let idp = Idp::start().await;
    let toml = local_toml(&idp).replace("cookie_secure = false", "cookie_secure = true");
    let svc = Service::start(&format!("{toml}cookie_name = \"__Host-pc\"\n")).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let mut jar = StrictJar::default();
    let start = jar.get(&format!("{}/oauth2/start?rd={}", svc.url, url::form_urlencoded::byte_serialize(home.as_bytes()).collect::<String>()), None).await;
    assert_eq!(start.status(), 302);
    assert!(jar.0.keys().any(|(n, p)| n.starts_with("__Secure-pc_login_") && p == "/oauth2/"), "{:?}", jar.0.keys());
    let at_idp = plain().get(location(&start)).send().await.unwrap();
    let cb = jar.get(&location(&at_idp), None).await;
    assert_eq!(cb.status(), 302, "{:?}", cb.text().await);
    let names: Vec<&str> = jar.0.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["__Host-pc", "__Secure-pc_logout"], "the login cookie is spent");
    assert_eq!(jar.get(&format!("{}/auth/nginx", svc.url), Some(&home)).await.status(), 200);

    let out = jar.get(&format!("{}/oauth2/logout", svc.url), None).await;
    assert_eq!(out.status(), 302);
    let to = url::Url::parse(&location(&out)).unwrap();
    let hint = to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned());
    assert_eq!(hint, Some(idp.issued().last().unwrap().id_token.clone()));
    // Only the sign-out nonce is left, for the way back from the provider.
    let names: Vec<(&str, &str)> = jar.0.keys().map(|(n, p)| (n.as_str(), p.as_str())).collect();
    assert_eq!(names, [("__Secure-pc_signout", "/oauth2/signed-out")]);
    assert_eq!(jar.get(&format!("{}/auth/nginx", svc.url), Some(&home)).await.status(), 401);
    let back = to.query_pairs().find(|(k, _)| k == "post_logout_redirect_uri").map(|(_, v)| v.into_owned()).unwrap();
    let state = to.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap();
    let page = jar.get(&format!("{back}?state={}", url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()), None).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("You are signed out."));
    assert!(jar.0.is_empty(), "{:?}", jar.0.keys());
}

#[tokio::test]
async fn stolen_cookie_stops_working_after_logout() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    let cookie = set_cookies(&cb).into_iter().find(|c| c.starts_with("_portcullis=")).unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    let copy = plain();
    let ask = || copy.get(format!("{}/auth/nginx", svc.url)).header("cookie", &pair).header("x-original-url", format!("{}/", svc.url)).send();
    assert_eq!(ask().await.unwrap().status(), 200);
    client.post(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    assert_eq!(ask().await.unwrap().status(), 401);
}

#[tokio::test]
async fn forward_endpoint_redirects_browsers_and_refuses_scripts() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let forwarded = |c: &reqwest::Client| {
        c.get(format!("{}/auth/forward", svc.url))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", svc.addr.to_string())
            .header("x-forwarded-uri", "/app/page?q=1")
    };
    let r = forwarded(&browser()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to = url::Url::parse(&location(&r)).unwrap();
    assert_eq!(to.path(), "/oauth2/start");
    let rd = to.query_pairs().find(|(k, _)| k == "rd").unwrap().1.into_owned();
    assert_eq!(rd, format!("{}/app/page?q=1", svc.url));

    let r = forwarded(&plain()).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());

    // Signed in, the same request passes with identity headers.
    let client = browser();
    login(&client, &svc.url, &rd).await;
    let r = forwarded(&client).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "alice");
}

/// Runs one login whose ID token `tamper` bends, and asserts it is refused
/// with `status`, that no session cookie is set and verify still says 401.
async fn refused(name: &str, status: u16, tamper: impl Fn(&mut common::idp::TokenSpec) + Send + Sync + 'static) {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    idp.tamper(tamper);
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), status, "{name}: {:?}", cb.headers());
    assert!(!session_cookie_set(&cb), "{name}: a session cookie was set");
    let body = cb.text().await.unwrap();
    assert!(body.contains("<h1>"), "{name}: not a readable page: {body}");
    assert!(!body.contains("eyJ"), "{name}: the page leaks a token: {body}");
    assert_eq!(verify(&client, &svc.url, &format!("{}/", svc.url)).await.status(), 401, "{name}");
    assert!(svc.logs().contains("login_failed"), "{name}: no audit line:\n{}", svc.logs());
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    refused("nonce", 400, |t| t.claims["nonce"] = json!("not-the-nonce")).await;
}

#[tokio::test]
async fn expired_id_token_is_refused() {
    refused("expired", 400, |t| {
        t.claims["exp"] = json!(now() - 3600);
        t.claims["iat"] = json!(now() - 7200);
    })
    .await;
}

#[tokio::test]
async fn id_token_from_the_future_is_refused() {
    refused("iat", 400, |t| t.claims["iat"] = json!(now() + 3600)).await;
    refused("nbf", 400, |t| t.claims["nbf"] = json!(now() + 3600)).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    refused("aud", 400, |t| t.claims["aud"] = json!("another-app")).await;
    refused("extra aud", 400, |t| t.claims["aud"] = json!([common::idp::CLIENT_ID, "another-app"])).await;
    refused("azp", 400, |t| t.claims["azp"] = json!("another-app")).await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    refused("iss", 400, |t| t.claims["iss"] = json!("https://evil.example.com")).await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    refused("signature", 400, |t| t.bad_signature = true).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    refused("alg none", 400, |t| {
        t.header = json!({"alg": "none", "typ": "JWT"});
        t.no_signature = true;
    })
    .await;
}

#[tokio::test]
async fn hs256_with_the_client_secret_is_refused() {
    refused("HS256", 400, |t| t.header["alg"] = json!("HS256")).await;
}

#[tokio::test]
async fn key_never_published_is_refused() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    idp.sign_with(2); // key 2 is not in the JWKS, even after a refetch
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 400);
    assert!(!session_cookie_set(&cb));
    // The JWKS was fetched again once, looking for the key.
    assert!(idp.requests_to("/jwks").await.len() >= 2);
}

#[tokio::test]
async fn rotated_provider_keys_are_fetched_again() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 302);
    let fetches = idp.requests_to("/jwks").await.len();
    idp.rotate_to(1);
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 302, "{:?}", cb.text().await);
    assert_eq!(idp.requests_to("/jwks").await.len(), fetches + 1);
    assert_eq!(verify(&client, &svc.url, &format!("{}/", svc.url)).await.status(), 200);
}

#[tokio::test]
async fn provider_access_denied_is_a_readable_403() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    idp.refuse_next("access_denied");
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 403);
    assert!(!session_cookie_set(&cb));
    let body = cb.text().await.unwrap();
    assert!(body.contains("access_denied"), "{body}");
    // A script gets JSON rather than a page.
    idp.refuse_next("access_denied");
    let script = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let start = script.get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let at = script.get(location(&start)).send().await.unwrap();
    let cb = script.get(location(&at)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(cb.status(), 403);
    assert_eq!(cb.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn bad_or_replayed_state_is_refused() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;

    // State altered on the way back.
    let client = browser();
    let start = client.get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let at = client.get(location(&start)).send().await.unwrap();
    let cb_url = location(&at);
    let mut bad = url::Url::parse(&cb_url).unwrap();
    let pairs: Vec<(String, String)> = bad
        .query_pairs()
        .map(|(k, v)| { let v = if k == "state" { format!("{v}x") } else { v.into_owned() }; (k.into_owned(), v) })
        .collect();
    bad.query_pairs_mut().clear().extend_pairs(pairs);
    let r = client.get(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(!session_cookie_set(&r));

    // A callback in a browser that never started the login.
    let other = browser();
    let r = other.get(&cb_url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(!session_cookie_set(&r));

    // The real callback works once; replaying it does not.
    let r = client.get(&cb_url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let again = browser();
    let start = again.get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let at = again.get(location(&start)).send().await.unwrap();
    let cb_url = location(&at);
    assert_eq!(again.get(&cb_url).send().await.unwrap().status(), 302);
    let replay = again.get(&cb_url).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(!session_cookie_set(&replay));
}

/// A login cookie sent again with its callback (a replay, or a script
/// hammering the callback) must not reach the provider again: each such
/// call spends the client's rate at the provider.
#[tokio::test]
async fn a_replayed_login_cookie_reaches_the_token_endpoint_once() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let start = plain().get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    let login_cookie = set_cookies(&start).into_iter().find(|c| c.starts_with("_portcullis_login_")).unwrap();
    let pair = login_cookie.split(';').next().unwrap().to_string();
    let at = plain().get(location(&start)).send().await.unwrap();
    let cb_url = location(&at);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (cb_url, pair) = (cb_url.clone(), pair.clone());
        set.spawn(async move { plain().get(&cb_url).header("cookie", pair).send().await.unwrap().status().as_u16() });
    }
    let mut statuses = set.join_all().await;
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| **s == 302).count(), 1, "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s != 302).all(|s| *s == 400), "{statuses:?}");
    assert_eq!(idp.requests_to("/token").await.len(), 1, "the provider was asked more than once");
    // Later, one by one: still refused, still not sent on.
    let r = plain().get(&cb_url).header("cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(!session_cookie_set(&r));
    assert_eq!(idp.requests_to("/token").await.len(), 1);
}

#[tokio::test]
async fn tampered_truncated_and_foreign_cookies_are_signed_out() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    let cookie = set_cookies(&cb).into_iter().find(|c| c.starts_with("_portcullis=")).unwrap();
    let value = cookie.split(';').next().unwrap().trim_start_matches("_portcullis=").to_string();
    let mut flipped = value.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_svc = service(&idp).await; // another instance, another generated key
    for (what, cookie) in [
        ("tampered", format!("_portcullis={flipped}")),
        ("truncated", format!("_portcullis={}", &value[..value.len() / 2])),
        ("garbage", "_portcullis=%%%;;==\u{e9}".to_string()),
        ("empty", "_portcullis=".to_string()),
        ("huge", format!("_portcullis={}", "A".repeat(6000))),
    ] {
        let r = plain()
            .get(format!("{}/auth/nginx", svc.url))
            .header("cookie", cookie.as_bytes())
            .header("x-original-url", format!("{}/", svc.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert!(r.headers().get("remote-user").is_none(), "{what}");
    }
    let r = plain()
        .get(format!("{}/auth/nginx", other_svc.url))
        .header("cookie", format!("_portcullis={value}"))
        .header("x-original-url", format!("{}/", other_svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a cookie sealed by another key");
}

#[tokio::test]
async fn open_redirect_tricks_are_400_never_a_redirect() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let host = svc.addr.ip().to_string();
    for rd in [
        "//evil.com".to_string(),
        "/\\evil.com".to_string(),
        "https://evil.com/".to_string(),
        format!("https://{host}.evil.com/"),
        format!("https://evil.com@{host}/"),
        format!("https://{host}@evil.com/"),
        "javascript:alert(1)".to_string(),
        "/%0d%0aSet-Cookie:%20x=y".to_string(),
        "/a\r\nSet-Cookie: x=y".to_string(),
        "https:evil.com".to_string(),
        "http:\\\\evil.com".to_string(),
        "\thttps://evil.com".to_string(),
    ] {
        for endpoint in ["/oauth2/start", "/oauth2/logout"] {
            let r = browser().get(format!("{}{endpoint}", svc.url)).query(&[("rd", &rd)]).send().await.unwrap();
            assert_eq!(r.status(), 400, "{endpoint} accepted {rd:?}");
            assert!(r.headers().get("location").is_none(), "{endpoint} redirected for {rd:?}");
        }
    }
    // An allowed relative path resolves against the original host.
    let r = browser().get(format!("{}/oauth2/start?rd=/photos", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn malformed_forwarded_headers_are_400() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let c = plain();
    let r = c.get(format!("{}/auth/nginx", svc.url)).header("x-original-url", "not a url").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(format!("{}/auth/nginx", svc.url)).header("x-original-url", "ftp://x/").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("{}/auth/forward", svc.url))
        .header("x-forwarded-proto", "gopher")
        .header("x-forwarded-host", "a.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("{}/auth/forward", svc.url))
        .header("x-forwarded-host", "a.example")
        .header("x-forwarded-uri", "//evil.com/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn provider_down_at_start_then_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let idp_addr = listener.local_addr().unwrap();
    drop(listener);
    // A config pointing at a provider that is not there yet.
    let port = common::free_port();
    let toml = format!(
        r#"listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[oidc]
issuer = "http://{idp_addr}"
client_id = "{}"
client_secret = "{}"
insecure_http = true
[session]
cookie_secure = false
"#,
        common::idp::CLIENT_ID,
        common::idp::CLIENT_SECRET
    );
    let svc = Service::start(&toml).await;
    let ready = plain().get(format!("{}/readyz", svc.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["problems"]["identity_provider"].as_str().unwrap().contains("reach"), "{body}");
    let start = browser().get(format!("{}/oauth2/start", svc.url)).send().await.unwrap();
    assert_eq!(start.status(), 503);
    assert!(start.text().await.unwrap().contains("<h1>"));
    assert_eq!(verify(&browser(), &svc.url, &format!("{}/", svc.url)).await.status(), 401);

    // The provider comes up; portcullis finds it by itself.
    let idp = Idp::start_on(std::net::TcpListener::bind(idp_addr).unwrap()).await;
    svc.wait_ready().await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 302);
    assert_eq!(verify(&client, &svc.url, &format!("{}/", svc.url)).await.status(), 200);
    drop(idp);
}

#[tokio::test]
async fn health_and_readiness() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let r = plain().get(format!("{}/healthz", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = plain().get(format!("{}/readyz", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = plain().get(format!("{}/nothing-here", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let idp = Idp::start().await;
    let svc = service(&idp).await;
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    let cookie = set_cookies(&cb).into_iter().find(|c| c.starts_with("_portcullis=")).unwrap();
    let value = cookie.split(';').next().unwrap().trim_start_matches("_portcullis=").to_string();
    verify(&client, &svc.url, &format!("{}/", svc.url)).await;
    client.get(format!("{}/oauth2/logout", svc.url)).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = svc.logs();
    assert!(!logs.contains(common::idp::CLIENT_SECRET), "client secret in logs");
    assert!(!logs.contains(&value), "session cookie in logs");
    assert!(!logs.contains("eyJ"), "a JWT in logs:\n{logs}");
    assert!(!logs.contains("at-"), "an access token in logs:\n{logs}");
    assert!(!logs.contains("rt-"), "a refresh token in logs:\n{logs}");
}
