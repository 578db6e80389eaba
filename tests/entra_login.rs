//! Entra ID logins end to end: an ID token from the mock provider with
//! group overage or GUID groups, Microsoft Graph on its own mock, and what
//! verify then answers.

mod common;

use common::graph::*;
use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, login, verify};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// portcullis for `idp`, with Graph on `entra` in client-credentials mode
/// and `extra` top-level configuration.
fn config(idp: &Idp, entra: &Entra, top: &str, graph: &str) -> String {
    format!(
        "{top}\n{}\n[graph]\nenabled = true\nmode = \"client_credentials\"\ntenant = \"{TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nauthority = \"{uri}\"\ngraph_url = \"{uri}\"\n{graph}\n\
         [[role_map]]\ngroup = \"photo-admins\"\nrole = \"admin\"\n",
        local_toml(idp),
        uri = entra.uri()
    )
}

async fn app_token(entra: &Entra) {
    Mock::given(method("POST")).and(path(entra.token_path())).respond_with(token_ok("app-token-1")).mount(&entra.server).await;
}

fn overage_user() -> serde_json::Value {
    let mut claims = serde_json::Value::Object(overage_claims(OID));
    claims["preferred_username"] = json!("erin");
    claims
}

#[tokio::test]
async fn overage_login_gets_groups_and_role_from_graph() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    app_token(&entra).await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins"), directory_role(VPN, "Global Reader"), group(STAFF, "staff")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let svc = Service::start(&config(&idp, &entra, "", "")).await;
    svc.wait_ready().await;
    idp.set_user(overage_user());
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "erin");
    assert_eq!(r.headers()["remote-groups"], "photo-admins,staff");
    assert_eq!(r.headers()["remote-role"], "admin");

    // A second login within cache_ttl asks Graph nothing (expect(1) above).
    let again = browser();
    assert_eq!(login(&again, &svc.url, &home).await.status(), 302);
    assert_eq!(verify(&again, &svc.url, &home).await.headers()["remote-role"], "admin");
}

#[tokio::test]
async fn graph_refusal_refuses_when_groups_are_required_and_says_which_permission() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    app_token(&entra).await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .respond_with(graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."))
        .mount(&entra.server)
        .await;

    // Groups required: membership unknown, so no entry.
    let required = config(&idp, &entra, "", "").replace("[session]", "[identity]\nrequired_groups = [\"staff\"]\n\n[session]");
    let svc = Service::start(&required).await;
    svc.wait_ready().await;
    idp.set_user(overage_user());
    let client = browser();
    let home = format!("{}/", svc.url);
    let cb = login(&client, &svc.url, &home).await;
    assert_eq!(cb.status(), 403);
    let logs = svc.logs();
    assert!(logs.contains("GroupMember.Read.All"), "{logs}");
    assert!(logs.contains("login_refused") && logs.contains("overage"), "{logs}");
    assert_eq!(verify(&client, &svc.url, &home).await.status(), 401);
    assert!(!logs.contains(CLIENT_SECRET) && !logs.contains("app-token-1"));

    // No group required: the login goes on with the token's groups (none).
    let svc = Service::start(&config(&idp, &entra, "", "")).await;
    svc.wait_ready().await;
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-groups"], "");
    assert_eq!(r.headers()["remote-role"], "guest", "never a role from a failed lookup");
}

#[tokio::test]
async fn guid_groups_match_by_name_and_show_names() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    app_token(&entra).await;
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(move |req: &wiremock::Request| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let responses: Vec<serde_json::Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let id = r["url"].as_str().unwrap().split('/').nth(2).unwrap().split('?').next().unwrap().to_string();
                    let name = if id == PHOTO_ADMINS { "photo-admins" } else { "family" };
                    json!({"id": r["id"], "status": 200, "body": {"id": id, "displayName": name}})
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"responses": responses}))
        })
        .expect(1)
        .mount(&entra.server)
        .await;
    let svc = Service::start(&config(&idp, &entra, "", "")).await;
    svc.wait_ready().await;
    let mut user = serde_json::Value::Object(claims_with_groups(OID, &[PHOTO_ADMINS, FAMILY]));
    user["preferred_username"] = json!("erin");
    idp.set_user(user);
    let home = format!("{}/", svc.url);
    for _ in 0..2 {
        let client = browser();
        assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
        let r = verify(&client, &svc.url, &home).await;
        assert_eq!(r.headers()["remote-groups"], "photo-admins,family");
        assert_eq!(r.headers()["remote-role"], "admin", "role_map names the group by name, the token by GUID");
    }
}

#[tokio::test]
async fn memberships_are_looked_up_again_at_refresh() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    app_token(&entra).await;
    // First lookup: staff only; every later one: staff and photo-admins.
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .respond_with(page(vec![group(STAFF, "staff"), group(PHOTO_ADMINS, "photo-admins")], None))
        .with_priority(2)
        .mount(&entra.server)
        .await;
    // No Graph cache, so the refresh sees the change at once.
    let svc = Service::start(&config(&idp, &entra, "", "cache_ttl = \"0s\"")).await;
    svc.wait_ready().await;
    idp.set_expires_in(2);
    idp.set_user(overage_user());
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.headers()["remote-role"], "guest");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-groups"], "staff,photo-admins");
    assert_eq!(r.headers()["remote-role"], "admin");
}

#[tokio::test]
async fn a_login_from_another_tenant_gets_no_groups_and_graph_is_not_asked() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    app_token(&entra).await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins")], None))
        .mount(&entra.server)
        .await;
    let svc = Service::start(&config(&idp, &entra, "", "")).await;
    svc.wait_ready().await;
    let home = format!("{}/", svc.url);

    // Another directory's user whose token names a group `photo-admins`
    // (a name that directory chose): no role from it.
    let mut user = serde_json::Value::Object(claims_with_groups(OID, &["photo-admins"]));
    user["preferred_username"] = json!("mallory");
    user["tid"] = json!(FOREIGN_TENANT);
    idp.set_user(user);
    let client = browser();
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "mallory");
    assert_eq!(r.headers()["remote-groups"], "");
    assert_eq!(r.headers()["remote-role"], "guest");

    // The same user with overage, groups required: refused, and Graph was
    // never asked about the `oid`.
    let required = config(&idp, &entra, "", "").replace("[session]", "[identity]\nrequired_groups = [\"photo-admins\"]\n\n[session]");
    let svc = Service::start(&required).await;
    svc.wait_ready().await;
    let mut user = overage_user();
    user["tid"] = json!(FOREIGN_TENANT);
    idp.set_user(user);
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 403);
    let logs = svc.logs();
    assert!(logs.contains(&format!("tid {FOREIGN_TENANT}")) && logs.contains("Microsoft Graph is not asked"), "{logs}");
    assert!(received(&entra).await.is_empty(), "Entra was asked: {:?}", received(&entra).await);
}

#[tokio::test]
async fn login_refresh_and_graph_work_with_a_certificate_instead_of_a_secret() {
    let idp = Idp::start().await;
    let entra = Entra::start().await;
    let idp_token = format!("{}/token", idp.issuer);
    let checked = idp_token.clone();
    idp.accept_client_assertions(move |form| {
        check_client_assertion(form, common::idp::CLIENT_ID, &checked).map(|_| ())
    });
    let entra_token = format!("{}{}", entra.uri(), entra.token_path());
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .and(ClientAssertion { client_id: common::idp::CLIENT_ID.into(), token_endpoint: entra_token.clone() })
        .respond_with(token_ok("app-token-1"))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{OID}/transitiveMemberOf")))
        .and(wiremock::matchers::header("authorization", "Bearer app-token-1"))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins")], None))
        .mount(&entra.server)
        .await;
    let toml = format!(
        "{}\n[graph]\nenabled = true\nmode = \"client_credentials\"\ntenant = \"{TENANT}\"\nauthority = \"{uri}\"\n\
         graph_url = \"{uri}\"\ncache_ttl = \"0s\"\n[[role_map]]\ngroup = \"photo-admins\"\nrole = \"admin\"\n",
        local_toml(&idp)
            .replace(&format!("client_secret = \"{}\"", common::idp::CLIENT_SECRET), &private_key_jwt_toml()),
        uri = entra.uri()
    );
    assert!(!toml.contains("client_secret"), "{toml}");
    let svc = Service::start(&toml).await;
    svc.wait_ready().await;
    idp.set_expires_in(2);
    idp.set_user(overage_user());
    let client = browser();
    let home = format!("{}/", svc.url);
    assert_eq!(login(&client, &svc.url, &home).await.status(), 302, "{}", svc.logs());
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-role"], "admin");

    // The access token expires: the refresh authenticates the same way.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = verify(&client, &svc.url, &home).await;
    assert_eq!(r.status(), 200, "{}", svc.logs());
    assert_eq!(r.headers()["remote-role"], "admin");
    assert!(idp.refresh_count().await >= 1, "{}", svc.logs());

    // Every token request carried a valid assertion and no secret; none
    // of it, nor the key, was logged.
    let requests = idp.requests_to("/token").await;
    assert!(requests.len() >= 2);
    let logs = svc.logs();
    for r in requests {
        let form = url::form_urlencoded::parse(&r.body).into_owned().collect();
        check_client_assertion(&form, common::idp::CLIENT_ID, &idp_token).unwrap();
        assert!(!logs.contains(&form["client_assertion"]));
    }
    // The mock provider does not advertise private_key_jwt: said once, at discovery.
    assert_eq!(logs.matches("does not list private_key_jwt").count(), 1, "{logs}");
    let key_body = CLIENT_KEY.lines().nth(1).unwrap();
    assert!(!logs.contains(key_body) && !logs.contains("PRIVATE KEY"), "{logs}");
}
