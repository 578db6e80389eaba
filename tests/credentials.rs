//! Apps and devices without a browser, through the shipped NGINX and Caddy
//! examples: personal access tokens (as a bearer token, as the password of
//! HTTP Basic, in a header of their own) and the provider's own access
//! tokens reach the app with the same identity headers as a signed-in
//! browser; the credential itself never reaches the app; bad, expired,
//! forged, revoked or misplaced credentials are refused with 401 (or 403),
//! never a redirect; refusals are limited per address. The recipes of
//! docs/src/clients.md are run here as written there.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::idp::{CLIENT_ID, CLIENT_SECRET, SERVICE_ACCOUNT, key, now, sign_jwt};
use common::stack::*;
use common::upstream::Seen;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};

/// The audience the provider's tokens for these apps carry.
const AUDIENCE: &str = "photos-api";
/// Refusals per address and minute in these tests.
const MAX_FAILURES: u32 = 8;

async fn stack(kind: ProxyKind) -> Stack {
    let max = MAX_FAILURES.to_string();
    Stack::start_against(
        kind,
        Layout::AuthHost,
        &[
            ("PORTCULLIS_API__BEARER_TOKENS", "true"),
            ("PORTCULLIS_API__AUDIENCES", AUDIENCE),
            ("PORTCULLIS_API__TOKEN_HEADER", "X-Portcullis-Token"),
            ("PORTCULLIS_API__MAX_FAILURES_PER_MINUTE", &max),
        ],
    )
    .await
}

/// An access token the provider signed, for alice, with `extra` over the
/// usual claims (`null` removes one).
fn provider_token(s: &Stack, extra: Value) -> String {
    let mut claims = alice();
    let usual = json!({"iss": s.idp.issuer, "aud": AUDIENCE, "iat": now(), "exp": now() + 300});
    for (k, v) in usual.as_object().cloned().unwrap_or_default().into_iter().chain(extra.as_object().cloned().unwrap_or_default()) {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(&k);
        } else {
            claims[k] = v;
        }
    }
    let k = key(0);
    sign_jwt(&json!({"alg": "RS256", "typ": "at+jwt", "kid": k.kid}), &claims, &k)
}

/// `GET url` with one extra header, from a client without cookies.
async fn with_header(s: &Stack, url: &str, name: &str, value: &str) -> reqwest::Response {
    s.script().get(url).header(name, value).send().await.unwrap()
}

/// Asserts a 200 whose request reached the app as alice without the credential.
async fn admitted_as_alice(s: &Stack, r: reqwest::Response, what: &str) -> Seen {
    assert_eq!(r.status(), StatusCode::OK, "{what}\n{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_alice(&seen, what);
    assert_eq!(seen.header("authorization"), None, "{what}: the credential reached the app: {seen:?}");
    assert_eq!(seen.header("x-portcullis-token"), None, "{what}: the credential reached the app: {seen:?}");
    assert_eq!(seen.header("x-portcullis-credential"), None, "{what}: {seen:?}");
    seen
}

/// Asserts an RFC 6750 refusal: 401 with the challenge, no redirect, and
/// nothing reached the app.
async fn refused(s: &Stack, r: reqwest::Response, before: usize, what: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}\n{}", s.logs());
    assert!(r.headers().get(LOCATION).is_none(), "{what}: redirected");
    let challenges: Vec<_> = r.headers().get_all(WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(challenges.iter().any(|c| c.starts_with("Bearer ") && c.contains("error=\"invalid_token\"")), "{what}: {challenges:?}");
    assert_eq!(s.app.count(), before, "{what}: reached the app");
}

async fn run(kind: ProxyKind) {
    if !have(kind) {
        return;
    }
    let s = stack(kind).await;
    let public = s.layout.public_url();
    let url = "https://app.example.com/api/albums?page=2";

    // A person signs in and makes tokens on /oauth2/tokens, linked from
    // portcullis's own page.
    let browser = s.browser();
    sign_in(&s, &browser, "https://app.example.com/").await;
    let own = get(&browser, &format!("{public}/oauth2/signed-out")).await.text().await.unwrap();
    assert!(own.contains(&format!("<a href=\"{public}/oauth2/tokens\">Personal access tokens</a>")), "{own}");
    let phone = common::tokens::make(&browser, public, "Immich on my phone", "90d", "").await;
    let elsewhere = common::tokens::make(&browser, public, "Files only", "never", "files.example.com").await;
    let listed = common::tokens::page(&browser, public).await;
    assert!(listed.contains("Immich on my phone") && listed.contains("files.example.com"), "{listed}");
    assert!(!listed.contains(&phone), "a token is shown only once");

    // A personal token gets in three ways, as alice, and is not passed on.
    let r = with_header(&s, url, "Authorization", &format!("Bearer {phone}")).await;
    let seen = admitted_as_alice(&s, r, "bearer personal token").await;
    assert_eq!(seen.uri, "/api/albums?page=2");
    let r = s.script().get(url).basic_auth("any-name", Some(&phone)).send().await.unwrap();
    admitted_as_alice(&s, r, "personal token as the Basic password").await;
    let r = with_header(&s, url, "X-Portcullis-Token", &phone).await;
    admitted_as_alice(&s, r, "personal token in its own header").await;

    // The app's own Authorization (its Basic login) is the app's: a
    // signed-in browser's reaches it unchanged.
    let r = browser.get(url).basic_auth("alice", Some("her-app-password")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    let own = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:her-app-password"));
    assert_eq!(seen.header("authorization"), Some(own.as_str()), "{seen:?}");

    // A token limited to other hosts is refused here: 403.
    let before = s.app.count();
    let r = with_header(&s, url, "Authorization", &format!("Bearer {elsewhere}")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", s.logs());
    assert_eq!(s.app.count(), before);

    // The provider's own token, for this audience, gets in as alice.
    let good = provider_token(&s, json!({}));
    let r = with_header(&s, url, "Authorization", &format!("Bearer {good}")).await;
    admitted_as_alice(&s, r, "provider token").await;
    let r = with_header(&s, url, "Authorization", &format!("Bearer {good}")).await;
    admitted_as_alice(&s, r, "provider token, cached").await;
    if kind == ProxyKind::Nginx {
        // (Caddy drops Proxy-Authorization as a hop-by-hop header.)
        let r = with_header(&s, url, "Proxy-Authorization", &format!("Bearer {good}")).await;
        let seen = admitted_as_alice(&s, r, "provider token in Proxy-Authorization").await;
        assert_eq!(seen.header("proxy-authorization"), None, "{seen:?}");
    }

    // Refused, with 401 and RFC 6750's challenge, and never a redirect,
    // even for a browser's Accept: a token that is not one, a wrong
    // audience, an expired one, `alg: none`, one signed by a key the
    // provider does not publish.
    let before = s.app.count();
    let forged_unsigned = {
        let head = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(json!({"iss": s.idp.issuer, "aud": AUDIENCE, "sub": "user-1", "preferred_username": "alice", "groups": ["admins"], "exp": now() + 300}).to_string());
        format!("{head}.{body}.")
    };
    let other_key = {
        let k = key(2);
        let claims = json!({"iss": s.idp.issuer, "aud": AUDIENCE, "sub": "user-1", "preferred_username": "alice", "exp": now() + 300});
        sign_jwt(&json!({"alg": "RS256", "kid": key(0).kid}), &claims, &k)
    };
    let bad_personal = format!("pcat_{}", "A".repeat(43));
    // The verified (and cached) token with one letter of its claims
    // changed: the same length and signature, so the same place in the
    // cache of verified tokens, but not the token that verified.
    let altered = {
        let mut parts = good.split('.');
        let (head, body, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert!(claims.contains("\"alice\""), "{claims}");
        format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.replace("\"alice\"", "\"admin\"")))
    };
    assert_eq!(altered.len(), good.len());
    for (what, credential) in [
        ("the cached token with its claims altered", altered),
        ("an unknown personal token", bad_personal.clone()),
        ("a wrong audience", provider_token(&s, json!({"aud": "someone-else"}))),
        ("an expired token", provider_token(&s, json!({"exp": now() - 600, "iat": now() - 900}))),
        ("alg none", forged_unsigned),
        ("a forged signature", other_key),
    ] {
        let r = s
            .browser()
            .get(url)
            .header("Authorization", format!("Bearer {credential}"))
            .send()
            .await
            .unwrap();
        refused(&s, r, before, what).await;
    }
    // A token from another issuer is not portcullis's: without a session,
    // a script gets the signed-out 401.
    let foreign = {
        let k = key(0);
        let claims = json!({"iss": "https://id.other.test", "aud": AUDIENCE, "sub": "user-1", "preferred_username": "alice", "exp": now() + 300});
        sign_jwt(&json!({"alg": "RS256", "kid": k.kid}), &claims, &k)
    };
    let r = with_header(&s, url, "Authorization", &format!("Bearer {foreign}")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", s.logs());
    assert_eq!(s.app.count(), before);

    // The curl recipe: a token from the provider's token endpoint for the
    // script's own client (client credentials).
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/token", s.idp.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("audience", AUDIENCE)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let script_token = answer["access_token"].as_str().unwrap();
    let r = with_header(&s, url, "Authorization", &format!("Bearer {script_token}")).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(seen.header("remote-user"), Some(SERVICE_ACCOUNT), "{seen:?}");
    assert_eq!(seen.header("authorization"), None);

    // The provider rotates its key: a token naming a key portcullis has
    // not seen makes it fetch the provider's keys again, once.
    s.idp.rotate_to(1);
    let rotated = {
        let k = key(1);
        let claims = json!({"iss": s.idp.issuer, "aud": AUDIENCE, "sub": "user-1", "preferred_username": "alice",
                            "email": "alice@example.com", "email_verified": true, "name": "Alice Liddell",
                            "groups": ["family", "photos"], "exp": now() + 300});
        sign_jwt(&json!({"alg": "RS256", "kid": k.kid}), &claims, &k)
    };
    let r = with_header(&s, url, "Authorization", &format!("Bearer {rotated}")).await;
    admitted_as_alice(&s, r, "a token signed with the provider's new key").await;

    // Revoked on the page: refused from the next request on.
    common::tokens::revoke(&browser, public, "Immich on my phone").await;
    let r = with_header(&s, url, "X-Portcullis-Token", &phone).await;
    refused(&s, r, s.app.count(), "a revoked token").await;

    // The audit log names each refusal, never a credential.
    let logs = s.svc.logs();
    assert!(logs.contains("event=\"token_refused\""), "{logs}");
    for secret in [&phone, &elsewhere, &good, &bad_personal] {
        assert!(!logs.contains(secret.as_str()), "a credential was logged");
    }

    // Too many refusals from one address: 429 with Retry-After, for a
    // while even with a good credential.
    let mut limited = None;
    for i in 0..=MAX_FAILURES {
        let guess = format!("pcat_{:0>43}", i);
        let r = with_header(&s, url, "X-Portcullis-Token", &guess).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}\n{}", s.logs());
    }
    let r = limited.unwrap_or_else(|| panic!("never limited\n{}", s.logs()));
    let wait: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let other = common::tokens::make(&browser, public, "Another", "30d", "").await;
    let r = with_header(&s, url, "Authorization", &format!("Bearer {other}")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{}", s.logs());
    // A browser's session is not a credential: it is not limited.
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let metrics = reqwest::get(format!("{}/metrics", s.svc.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_credentials_refused_total{kind=\"personal\",reason=\"rate_limited\"}"), "{metrics}");
    // The provider token was verified once, then answered from the cache.
    let hits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_cache_lookups_total{cache=\"bearer_tokens\",result=\"hit\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(hits.is_some_and(|n| n >= 1), "{metrics}");
}

#[tokio::test]
async fn credentials_through_nginx() {
    run(ProxyKind::Nginx).await;
}

#[tokio::test]
async fn credentials_through_caddy() {
    run(ProxyKind::Caddy).await;
}

fn alice_of_the_family(idp: &common::idp::Idp) {
    idp.set_user(json!({"sub": "user-1", "preferred_username": "alice", "groups": ["family"]}));
}

#[tokio::test]
async fn the_tokens_page_refuses_forged_forms_and_sends_signed_out_browsers_to_sign_in() {
    let idp = common::idp::Idp::start().await;
    alice_of_the_family(&idp);
    let (svc, client, _) = common::signed_in(&idp).await;
    let tokens = format!("{}/oauth2/tokens", svc.url);

    // Signed out: a browser goes to sign in and comes back here; a script gets 401.
    let r = common::browser().get(&tokens).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let to = url::Url::parse(&common::location(&r)).unwrap();
    assert_eq!(to.path(), "/oauth2/start");
    assert_eq!(query_param(&to, "rd").as_deref(), Some(tokens.as_str()));
    assert_eq!(common::plain().get(&tokens).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // A form without this session's CSRF token, or from another origin, makes nothing.
    let html = common::tokens::page(&client, &svc.url).await;
    let csrf = common::tokens::input_value(&html, "csrf").unwrap();
    // Another person, signed in in another browser.
    idp.set_user(json!({"sub": "user-2", "preferred_username": "bob"}));
    let other = common::browser();
    common::login(&other, &svc.url, &format!("{}/", svc.url)).await;
    let others_csrf = common::tokens::input_value(&common::tokens::page(&other, &svc.url).await, "csrf").unwrap();
    assert_ne!(csrf, others_csrf);
    let create = |csrf: String, origin: &'static str| {
        client
            .post(&tokens)
            .header("origin", origin)
            .form(&[("csrf", csrf), ("action", "create".into()), ("name", "x".into()), ("expires", "30d".into())])
            .send()
    };
    let own_origin: &'static str = Box::leak(svc.url.clone().into_boxed_str());
    for (what, csrf, origin) in [
        ("no csrf", String::new(), own_origin),
        ("another session's csrf", others_csrf, own_origin),
        ("another origin", csrf.clone(), "https://evil.test"),
    ] {
        let r = create(csrf, origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    // Bad names, hosts and expiries are refused with a reason.
    for (name, expires, hosts) in [("", "30d", ""), ("ok", "forever", ""), ("ok", "30d", "photos.example.com/x"), (&"n".repeat(65)[..], "30d", "")] {
        let r = client
            .post(&tokens)
            .form(&[("csrf", csrf.as_str()), ("action", "create"), ("name", name), ("expires", expires), ("hosts", hosts)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name} {expires} {hosts}");
    }
    assert!(common::tokens::page(&client, &svc.url).await.contains("You have no tokens."));

    // What a person types is shown as text, never as markup.
    common::tokens::make(&client, &svc.url, "<script>alert(1)</script>", "30d", "").await;
    let html = common::tokens::page(&client, &svc.url).await;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"), "{html}");
    // Another person cannot revoke it.
    let r = other
        .post(&tokens)
        .form(&[("csrf", common::tokens::input_value(&common::tokens::page(&other, &svc.url).await, "csrf").unwrap()), ("action", "revoke".into()), ("id", common::tokens::input_value(&html[html.find("<strong>").unwrap()..], "id").unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(common::tokens::page(&client, &svc.url).await.contains("&lt;script&gt;"), "still there");
    assert!(common::tokens::page(&other, &svc.url).await.contains("You have no tokens."), "nor sees it");
}

#[tokio::test]
async fn provider_tokens_need_the_required_scopes_and_an_audience_is_required() {
    let idp = common::idp::Idp::start().await;
    let toml = format!(
        "{}\n[api]\nbearer_tokens = true\naudiences = [\"{AUDIENCE}\"]\nrequired_scopes = [\"photos.read\"]\n",
        common::service::local_toml(&idp)
    );
    let svc = common::service::Service::start(&toml).await;
    svc.wait_ready().await;
    let token = |scope: Value| {
        let k = key(0);
        let claims = json!({"iss": idp.issuer, "aud": AUDIENCE, "sub": "user-1", "preferred_username": "alice", "exp": now() + 300, "scope": scope["scope"], "scp": scope["scp"]});
        sign_jwt(&json!({"alg": "RS256", "kid": k.kid}), &claims, &k)
    };
    let ask = |t: String| {
        common::plain().get(format!("{}/auth/nginx", svc.url)).header("x-original-url", "https://app.example.com/").bearer_auth(t).send()
    };
    let r = ask(token(json!({"scope": "openid photos.read"}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("x-portcullis-credential").unwrap(), "authorization");
    let r = ask(token(json!({"scp": ["photos.read"]}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "Entra's scp");
    let r = ask(token(json!({"scope": "openid photos.write"}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let challenge = r.headers().get(WWW_AUTHENTICATE).unwrap().to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");

    // Turned on without an audience: refused at start, naming the key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check-config")
        .env("PORTCULLIS_API__BEARER_TOKENS", "true")
        .env("PORTCULLIS_CONFIG", svc.dir.path().join("portcullis.toml"))
        .env("PORTCULLIS_API__AUDIENCES", "[]")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.audiences"), "{}", String::from_utf8_lossy(&out.stderr));
}
