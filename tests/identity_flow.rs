//! Identity mapping and policy through real logins at the mock provider:
//! shared accounts, guests with their own upstream key, required groups,
//! per-host and per-path policy, header injection, and `explain` agreeing
//! with verify.

mod common;

use std::process::Command;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, login, plain, verify};
use serde_json::{Value, json};

const FAMILY_KEY: &str = "family-key-0c9e51";
const GUEST_KEY: &str = "guest-key-77d2ab";

/// The book's family example (examples/identity.toml), with policy for two hosts. Top-level keys
/// go before the harness's tables.
fn config(idp: &Idp, key_file: &std::path::Path) -> String {
    format!(
        r#"debug_explain = true
{base}
[identity]
required_groups = ["family", "guests", "admins"]
default_role = "guest"

[[identity.rules]]
emails = ["alice@example.com", "bob@example.com", "carol@example.com"]
user = "family"
email = "family@example.com"
name = "Family"

[[identity.rules]]
groups = ["guests"]
user = "guest"
role = "viewer"

[[role_map]]
group = "admins"
role = "admin"

[[policy]]
host = "photos.example.com"
path = "/api/shared-link/*"
action = "bypass"

[[policy]]
host = "photos.example.com"
path = "/admin"
action = "deny"

[[policy]]
host = "admin.example.com"
action = "allow"
roles = ["admin"]

[upstream_headers.family]
x-api-key = {{ file = "{key}" }}

[upstream_headers.guest]
x-api-key = {{ env = "IMMICH_GUEST_KEY" }}
"#,
        base = local_toml(idp),
        key = key_file.display(),
    )
}

struct Setup {
    idp: Idp,
    svc: Service,
    toml: String,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("immich-family-key");
    std::fs::write(&key_file, format!("{FAMILY_KEY}\n")).unwrap();
    let toml = config(&idp, &key_file);
    let svc = Service::start_with_env(&toml, &[("IMMICH_GUEST_KEY", GUEST_KEY)]).await;
    svc.wait_ready().await;
    Setup { idp, svc, toml, dir }
}

fn person(user: &str, email: &str, groups: &[&str]) -> Value {
    json!({"sub": format!("sub-{user}"), "preferred_username": user, "email": email,
           "email_verified": true, "name": format!("{user} (own name)"), "groups": groups})
}

/// Logs `claims` in with a fresh browser; the callback must redirect.
async fn signed_in(s: &Setup, claims: Value) -> reqwest::Client {
    s.idp.set_user(claims);
    let client = browser();
    let cb = login(&client, &s.svc.url, &format!("{}/", s.svc.url)).await;
    assert_eq!(cb.status(), 302, "login failed: {:?}\n{}", cb.text().await, s.svc.logs());
    client
}

#[tokio::test]
async fn family_members_all_arrive_as_the_shared_user() {
    let s = setup().await;
    for who in ["alice", "bob", "carol"] {
        let client = signed_in(&s, person(who, &format!("{who}@example.com"), &["family"])).await;
        let r = verify(&client, &s.svc.url, "https://photos.example.com/album/1").await;
        assert_eq!(r.status(), 200, "{who}");
        let h = r.headers();
        assert_eq!(h["remote-user"], "family", "{who}");
        assert_eq!(h["remote-email"], "family@example.com");
        assert_eq!(h["remote-name"], "Family");
        assert_eq!(h["remote-subject"], who, "the person stays visible for audits");
        assert_eq!(h["x-api-key"], FAMILY_KEY);
    }
    let logs = s.svc.logs();
    for who in ["alice", "bob", "carol"] {
        assert!(logs.contains(&format!("user=family person={who}")), "{logs}");
    }
    assert!(!logs.contains(FAMILY_KEY), "the upstream key never reaches the logs");
}

#[tokio::test]
async fn a_guest_is_a_viewer_with_the_guest_key_only_on_200() {
    let s = setup().await;
    let client = signed_in(&s, person("gus", "gus@elsewhere.example", &["Guests"])).await;
    let r = verify(&client, &s.svc.url, "https://photos.example.com/album/1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "guest");
    assert_eq!(r.headers()["remote-role"], "viewer");
    assert_eq!(r.headers()["remote-subject"], "gus");
    assert_eq!(r.headers()["x-api-key"], GUEST_KEY);

    // Forbidden: no identity, no key.
    for url in ["https://admin.example.com/", "https://photos.example.com/admin/users"] {
        let r = verify(&client, &s.svc.url, url).await;
        assert_eq!(r.status(), 403, "{url}");
        assert!(r.headers().get("x-api-key").is_none() && r.headers().get("remote-user").is_none(), "{url}");
    }
    // Signed out: no key either.
    let r = verify(&plain(), &s.svc.url, "https://photos.example.com/album/1").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("x-api-key").is_none());
    assert!(!s.svc.logs().contains(GUEST_KEY));
}

#[tokio::test]
async fn outside_required_groups_is_refused_without_a_session() {
    let s = setup().await;
    s.idp.set_user(person("sam", "alice@example.com", &["strangers"]));
    let client = browser();
    let cb = login(&client, &s.svc.url, &format!("{}/", s.svc.url)).await;
    assert_eq!(cb.status(), 403);
    let cookies: Vec<String> = cb.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(!cookies.iter().any(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;")), "{cookies:?}");
    let body = cb.text().await.unwrap();
    assert!(body.contains("not a member of any group allowed to sign in here"), "{body}");
    assert_eq!(verify(&client, &s.svc.url, "https://photos.example.com/").await.status(), 401);
    let logs = s.svc.logs();
    let line = logs.lines().find(|l| l.contains("login_refused")).unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    assert!(line.contains("sub-sam") && line.contains("required_groups"), "{line}");
}

#[tokio::test]
async fn group_overage_is_refused_with_a_reason() {
    let s = setup().await;
    s.idp.set_user(json!({"sub": "sub-big", "preferred_username": "big", "_claim_names": {"groups": "src1"},
                          "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}}));
    let cb = login(&browser(), &s.svc.url, &format!("{}/", s.svc.url)).await;
    assert_eq!(cb.status(), 403);
    assert!(cb.text().await.unwrap().contains("group membership could not be resolved"));
}

#[tokio::test]
async fn policy_bypass_deny_and_role_restricted_host() {
    let s = setup().await;
    // Bypass: no session needed, and no identity is sent.
    let r = verify(&plain(), &s.svc.url, "https://photos.example.com/api/shared-link/abc").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("remote-user").is_none() && r.headers().get("x-api-key").is_none());
    // Traversal does not stay inside the bypass: a path with a dot segment
    // (which browsers never send) is refused outright.
    let r = verify(&plain(), &s.svc.url, "https://photos.example.com/api/shared-link/../albums").await;
    assert_eq!(r.status(), 400);

    let admin = signed_in(&s, person("ada", "ada@example.com", &["admins"])).await;
    let r = verify(&admin, &s.svc.url, "https://admin.example.com/settings").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-role"], "admin");
    assert_eq!(verify(&admin, &s.svc.url, "https://photos.example.com/admin").await.status(), 403);
    assert_eq!(verify(&admin, &s.svc.url, "https://photos.example.com//admin").await.status(), 403);
    assert_eq!(verify(&admin, &s.svc.url, "https://photos.example.com/%61dmin").await.status(), 403);

    let family = signed_in(&s, person("bob", "bob@example.com", &["family"])).await;
    assert_eq!(verify(&family, &s.svc.url, "https://admin.example.com/settings").await.status(), 403);
    let logs = s.svc.logs();
    assert!(logs.contains("policy[2] requires one of the roles admin"), "{logs}");
}

#[tokio::test]
async fn claim_values_cannot_inject_headers() {
    let s = setup().await;
    let mut eve = person("eve", "eve@example.com", &["family", "admins\r\nX-Injected: 1"]);
    eve["name"] = json!("Eve\r\nRemote-User: admin\r\nX-Injected: 1");
    let client = signed_in(&s, eve).await;
    let r = verify(&client, &s.svc.url, "https://photos.example.com/").await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h.get_all("remote-user").iter().collect::<Vec<_>>(), ["eve"]);
    assert_eq!(h["remote-name"], "Eve  Remote-User: admin  X-Injected: 1");
    assert_eq!(h["remote-groups"], "family");
    assert_eq!(h["remote-role"], "guest", "the injected admins group grants nothing");
    assert!(h.get("x-injected").is_none());

    // A user name that a header would alter is refused outright.
    s.idp.set_user(person("admin\r\n", "x@example.com", &["family"]));
    let cb = login(&browser(), &s.svc.url, &format!("{}/", s.svc.url)).await;
    assert_eq!(cb.status(), 403);
}

#[tokio::test]
async fn groups_only_in_userinfo_count() {
    // Authelia sends groups in userinfo, not in the ID token.
    let s = setup().await;
    s.idp.set_user(json!({"sub": "sub-una", "preferred_username": "una", "email": "una@example.com"}));
    s.idp.set_userinfo_extra(json!({"groups": ["guests"]}));
    let client = browser();
    let cb = login(&client, &s.svc.url, &format!("{}/", s.svc.url)).await;
    assert_eq!(cb.status(), 302, "{}", s.svc.logs());
    let r = verify(&client, &s.svc.url, "https://photos.example.com/").await;
    assert_eq!(r.headers()["remote-user"], "guest");
}

/// Runs `portcullis explain` on the service's configuration.
fn explain(s: &Setup, claims: &Value, url: &str) -> (i32, Value) {
    let config = s.dir.path().join("explain.toml");
    std::fs::write(&config, &s.toml).unwrap();
    let claims_file = s.dir.path().join("claims.json");
    std::fs::write(&claims_file, claims.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["explain", "--json", "--url", url, "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(&claims_file)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), json)
}

#[tokio::test]
async fn explain_agrees_with_verify_and_userinfo() {
    let s = setup().await;
    let people = [
        person("alice", "alice@example.com", &["family"]),
        person("gus", "gus@elsewhere.example", &["guests"]),
        person("ada", "ada@example.com", &["admins"]),
    ];
    let urls = ["https://photos.example.com/album/1", "https://admin.example.com/", "https://photos.example.com/admin"];
    for claims in &people {
        let client = signed_in(&s, claims.clone()).await;
        for url in urls {
            let r = verify(&client, &s.svc.url, url).await;
            let status = r.status().as_u16();
            let (code, explained) = explain(&s, claims, url);
            let who = &claims["preferred_username"];
            assert_eq!((status, code), if code == 0 { (200, 0) } else { (403, 1) }, "{who} {url}: {explained}");
            for (name, value) in explained["headers"].as_object().unwrap() {
                let got = r.headers().get(name.as_str()).unwrap_or_else(|| panic!("{who} {url}: no {name}"));
                if name == "x-api-key" {
                    assert!(value.as_str().unwrap().starts_with("********"), "masked: {value}");
                } else {
                    assert_eq!(got.to_str().unwrap(), value.as_str().unwrap(), "{who} {url}: {name}");
                }
            }
            if status == 200 {
                assert_eq!(explained["headers"].as_object().unwrap().len(), r.headers().keys().filter(|k| k.as_str().starts_with("remote-") || k.as_str() == "x-api-key").count());
            }

            // debug_explain: the signed-in user's own explanation.
            let info: Value = client
                .get(format!("{}/oauth2/userinfo", s.svc.url))
                .query(&[("url", url)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(info["explain"]["decision"], explained["decision"], "{who} {url}: {info}");
            assert_eq!(info["explain"]["headers"], explained["headers"], "{who} {url}");
            assert_eq!(info["user"], explained["identity"]["user"]);
            assert!(info.get("note").is_none(), "{info}");
        }
    }
}

#[tokio::test]
async fn a_refresh_merges_claims_as_the_login_did() {
    // Auth0-style URL-keyed groups, part in the ID token, part in userinfo:
    // the login unites them, and so must every refresh.
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    idp.set_user(json!({"sub": "u-dave", "preferred_username": "dave", "https://example.com/groups": ["staff"]}));
    idp.set_userinfo_extra(json!({"https://example.com/groups": ["guests"]}));
    let toml = format!("{}\n[identity]\ngroups_claim = \"https://example.com/groups\"\n", local_toml(&idp));
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&client, &svc.url, &home).await.headers()["remote-groups"], "staff,guests");
    // Refresh starts when half of the 2 s access-token life is left.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert!(svc.wait_for_log("session_refreshed", std::time::Duration::from_secs(2)).await, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-groups"], "staff,guests", "{}", svc.logs());
}

/// A provider that sends no `preferred_username` and lets anyone sign up
/// with any email (Auth0 database connections, many social logins), and a
/// configuration that trusts boss@example.com: a user-name rule, a policy
/// for boss's host, and boss's upstream credential.
fn boss_config(idp: &Idp) -> String {
    format!(
        r#"{base}
[[identity.rules]]
users = ["boss@example.com"]
user = "boss@example.com"
role = "admin"

[[policy]]
host = "boss.example.com"
action = "allow"
users = ["boss@example.com"]

[upstream_headers."boss@example.com"]
x-api-key = {{ env = "BOSS_KEY" }}
"#,
        base = local_toml(idp)
    )
}

const BOSS_KEY: &str = "boss-key-5e0a13";

#[tokio::test]
async fn an_unverified_email_is_not_who_someone_is() {
    let idp = Idp::start().await;
    let svc = Service::start_with_env(&boss_config(&idp), &[("BOSS_KEY", BOSS_KEY)]).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    let stranger = |verified: Option<Value>| {
        let mut c = json!({"sub": "auth0|6a1f", "email": "boss@example.com", "name": "Boss"});
        if let Some(v) = verified {
            c["email_verified"] = v;
        }
        c
    };
    for verified in [Some(json!(false)), None] {
        idp.set_user(stranger(verified.clone()));
        let client = browser();
        assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
        let r = verify(&client, &svc.url, "https://photos.example.com/").await;
        assert_eq!(r.status(), 200, "{verified:?}");
        let h = r.headers();
        assert_eq!(h["remote-user"], "auth0|6a1f", "{verified:?}: the user name falls back to sub");
        assert_eq!(h["remote-email"], "", "{verified:?}: the email is not sent");
        assert_eq!(h["remote-role"], "guest", "{verified:?}: the users rule does not match");
        assert!(h.get("x-api-key").is_none(), "{verified:?}: boss's credential is not sent");
        let r = verify(&client, &svc.url, "https://boss.example.com/").await;
        assert_eq!(r.status(), 403, "{verified:?}: the policy's users list does not match");
        assert!(r.headers().get("x-api-key").is_none());
    }
    let logs = svc.logs();
    assert!(logs.contains("the provider says email_verified = false"), "{logs}");
    assert!(logs.contains("the provider does not say it is verified"), "{logs}");
    assert!(!logs.contains(BOSS_KEY));

    // The real boss, whose provider verified the address, is boss.
    idp.set_user(stranger(Some(json!(true))));
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    let r = verify(&client, &svc.url, "https://boss.example.com/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "boss@example.com");
    assert_eq!(r.headers()["remote-role"], "admin");
    assert_eq!(r.headers()["x-api-key"], BOSS_KEY);
}

#[tokio::test]
async fn trust_unverified_email_counts_a_missing_claim_as_verified() {
    let idp = Idp::start().await;
    let toml = boss_config(&idp).replace("\n[[identity.rules]]", "\n[identity]\ntrust_unverified_email = true\n\n[[identity.rules]]");
    let svc = Service::start_with_env(&toml, &[("BOSS_KEY", BOSS_KEY)]).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    idp.set_user(json!({"sub": "entra-oid-1", "email": "boss@example.com"}));
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    let r = verify(&client, &svc.url, "https://boss.example.com/").await;
    assert_eq!((r.status().as_u16(), r.headers()["remote-user"].to_str().unwrap()), (200, "boss@example.com"));
    // Still not when the provider says it is unverified.
    idp.set_user(json!({"sub": "auth0|6a1f", "email": "boss@example.com", "email_verified": false}));
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    let r = verify(&client, &svc.url, "https://boss.example.com/").await;
    assert_eq!(r.status(), 403);
    assert!(svc.logs().contains("trust_unverified_email"), "the start-up warning");
}

#[tokio::test]
async fn a_look_alike_user_name_is_refused_at_login() {
    let idp = Idp::start().await;
    let toml = format!(
        "{}\n[[identity.rules]]\nusers = [\"kids\"]\nuser = \"kids\"\nrole = \"viewer\"\n\n[upstream_headers.kids]\nx-api-key = {{ env = \"KIDS_KEY\" }}\n",
        local_toml(&idp)
    );
    let svc = Service::start_with_env(&toml, &[("KIDS_KEY", "kids-key-1")]).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    // The Kelvin sign looks like K, and Unicode lower-casing made it `k`.
    idp.set_user(json!({"sub": "sub-mallory", "preferred_username": "\u{212A}ids"}));
    let client = browser();
    let cb = login(&client, &svc.url, &home).await;
    assert_eq!(cb.status(), 403);
    assert!(cb.text().await.unwrap().contains("Kelvin sign"));
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401, "no session");
    let logs = svc.logs();
    let line = logs.lines().find(|l| l.contains("login_refused")).unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    assert!(line.contains("sub-mallory") && line.contains("Kelvin sign"), "{line}");

    // The real kids, in any ASCII case, are kids.
    idp.set_user(json!({"sub": "sub-kids", "preferred_username": "Kids"}));
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!((r.headers()["remote-user"].to_str().unwrap(), r.headers()["x-api-key"].to_str().unwrap()), ("kids", "kids-key-1"));
}

/// An access token as the provider (or a forger) might write it: a JWT
/// with `claims`, signed with test key `key` under `kid`, or unsigned
/// (`alg: none`) when `key` is `None`.
fn access_jwt(claims: &Value, key: Option<usize>, kid: &str) -> String {
    use base64::Engine as _;
    match key {
        Some(n) => common::idp::sign_jwt(&json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}), claims, &common::idp::key(n)),
        None => {
            let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.", enc(&json!({"alg": "none", "typ": "at+jwt"})), enc(claims))
        }
    }
}

#[tokio::test]
async fn access_token_claims_are_merged_only_when_the_token_verifies() {
    let idp = Idp::start().await;
    let toml = format!("{}\n[[role_map]]\ngroup = \"admins\"\nrole = \"admin\"\n", local_toml(&idp));
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    idp.set_user(json!({"sub": "u-mallory", "preferred_username": "mallory"}));
    let now = common::idp::now();

    // (name, how the token is made, the role it yields, why it is left out)
    type Make = Box<dyn Fn(&str) -> String + Send + Sync>;
    let at = move |iss: &str, exp: u64| json!({"iss": iss, "sub": "u-mallory", "aud": "api", "exp": exp, "iat": now, "groups": ["admins"]});
    let cases: Vec<(&str, Make, &str, Option<&str>)> = vec![
        ("signed by the provider", Box::new(move |iss: &str| access_jwt(&at(iss, now + 300), Some(0), "test-key-0")), "admin", None),
        ("alg none", Box::new(move |iss: &str| access_jwt(&at(iss, now + 300), None, "")), "guest", Some("its algorithm is not one")),
        (
            "a key the provider does not publish",
            Box::new(move |iss: &str| access_jwt(&at(iss, now + 300), Some(1), "test-key-1")),
            "guest",
            Some("its signature does not verify"),
        ),
        (
            "another key under the provider's key ID",
            Box::new(move |iss: &str| access_jwt(&at(iss, now + 300), Some(1), "test-key-0")),
            "guest",
            Some("its signature does not verify"),
        ),
        (
            "another issuer",
            Box::new(move |_: &str| access_jwt(&at("https://evil.example", now + 300), Some(0), "test-key-0")),
            "guest",
            Some("its issuer is not"),
        ),
        ("expired", Box::new(move |iss: &str| access_jwt(&at(iss, now - 3600), Some(0), "test-key-0")), "guest", Some("it has expired")),
    ];
    for (name, make, role, why) in cases {
        let before = svc.logs().matches("access_token_claims_ignored").count();
        idp.access_tokens(move |iss, _| make(iss));
        let client = browser();
        assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{name}: {}", svc.logs());
        let r = verify(&client, &svc.url, &home).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["remote-role"], role, "{name}");
        let groups = if role == "admin" { "admins" } else { "" };
        assert_eq!(r.headers()["remote-groups"], groups, "{name}");
        let logs = svc.logs();
        let ignored: Vec<&str> = logs.lines().filter(|l| l.contains("access_token_claims_ignored")).skip(before).collect();
        match why {
            None => assert!(ignored.is_empty(), "{name}: {ignored:?}"),
            Some(why) => {
                assert_eq!(ignored.len(), 1, "{name}: {logs}");
                assert!(ignored[0].contains("not merged") && ignored[0].contains(why), "{name}: {}", ignored[0]);
            }
        }
    }
    // The access tokens themselves never reach the log.
    let logs = svc.logs();
    for issued in idp.issued() {
        assert!(!logs.contains(&issued.access_token), "an access token in the log");
    }
}

#[tokio::test]
async fn a_refresh_merges_access_token_claims_only_when_the_token_verifies() {
    let idp = Idp::start().await;
    idp.set_expires_in(2);
    let toml = format!("{}\n[[role_map]]\ngroup = \"admins\"\nrole = \"admin\"\n", local_toml(&idp));
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);
    idp.set_user(json!({"sub": "u-mallory", "preferred_username": "mallory", "groups": ["staff"]}));
    let token = |iss: &str, groups: &[&str], key: Option<usize>| {
        let now = common::idp::now();
        access_jwt(&json!({"iss": iss, "sub": "u-mallory", "exp": now + 300, "iat": now, "groups": groups}), key, "test-key-0")
    };
    idp.access_tokens(move |iss, _| token(iss, &["photos"], Some(0)));
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302);
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-groups"], "staff,photos", "the verified access token's groups");

    // The refresh hands out a forged token: its groups are not merged.
    idp.access_tokens(move |iss, _| token(iss, &["admins"], None));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 200);
    assert!(svc.wait_for_log("session_refreshed", std::time::Duration::from_secs(5)).await, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!((r.headers()["remote-groups"].to_str().unwrap(), r.headers()["remote-role"].to_str().unwrap()), ("staff", "guest"));
    assert!(svc.logs().contains("access_token_claims_ignored"), "{}", svc.logs());
}
