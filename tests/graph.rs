//! Microsoft Graph lookups for Entra ID logins, against a mock
//! login.microsoftonline.com and graph.microsoft.com: overage tokens in
//! every mode, paging, throttling, timeouts, permission and secret errors,
//! and GUID → name resolution with its cache.

mod common;

use std::time::{Duration, Instant};

use common::graph::*;
use portcullis::graph::{GraphError, GroupsHeader, Resolved};
use serde_json::json;
use wiremock::matchers::{any, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

const ME: &str = "/v1.0/me/transitiveMemberOf";

fn users_path(oid: &str) -> String {
    format!("/v1.0/users/{oid}/transitiveMemberOf")
}

fn names(r: &Resolved) -> Vec<String> {
    r.header_values(GroupsHeader::Names)
}

#[tokio::test]
async fn overage_delegated_reads_the_users_groups_with_their_token() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(header("authorization", format!("Bearer {USER_TOKEN}").as_str()))
        .and(query_param("$select", "id,displayName"))
        .respond_with(page(
            vec![group(PHOTO_ADMINS, "photo-admins"), directory_role(VPN, "Global Reader"), group(STAFF, "staff")],
            None,
        ))
        // The second login within cache_ttl is answered from the cache.
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("mode = \"delegated\"");
    let claims = overage_claims(OID);

    // What portcullis would know without Graph: nothing, and it says so.
    let fallback = graph.token_groups(&claims);
    assert!(fallback.groups.is_empty() && !fallback.membership_known());

    for _ in 0..2 {
        let r = graph.resolve(&claims, Some(USER_TOKEN)).await.unwrap();
        assert_eq!(names(&r), ["photo-admins", "staff"]);
        assert_eq!(r.header_values(GroupsHeader::Ids), [PHOTO_ADMINS, STAFF]);
        assert!(r.overage && r.from_graph && r.membership_known());
    }
}

#[tokio::test]
async fn overage_client_credentials_uses_one_cached_app_token() {
    let entra = Entra::start().await;
    let scope = entra.scope();
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .and(form_has(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope.as_str()),
        ]))
        .respond_with(token_ok("app-token-1"))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .and(header("authorization", "Bearer app-token-1"))
        .and(query_param("$select", "id,displayName"))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins"), admin_unit(VPN, "Berlin office")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let bob = "0c9b8a7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d";
    Mock::given(method("GET"))
        .and(path(users_path(bob)))
        .and(header("authorization", "Bearer app-token-1"))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("mode = \"client_credentials\"");

    let alice = graph.resolve(&overage_claims(OID), None).await.unwrap();
    assert_eq!(names(&alice), ["photo-admins"]);

    // `hasgroups: true` (the implicit-flow overage marker) triggers the lookup too.
    let bob_claims = obj(json!({"sub": "pairwise-bob", "oid": bob, "tid": TENANT, "hasgroups": true}));
    let bob = graph.resolve(&bob_claims, None).await.unwrap();
    assert_eq!(names(&bob), ["staff"]);
    assert!(bob.membership_known());
}

#[tokio::test]
async fn obo_exchanges_the_users_token_then_reads_me() {
    let entra = Entra::start().await;
    let scope = entra.scope();
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .and(form_has(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", USER_TOKEN),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope.as_str()),
        ]))
        .respond_with(token_ok("obo-graph-token"))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(header("authorization", "Bearer obo-graph-token"))
        .respond_with(page(vec![group(FAMILY, "family")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("mode = \"obo\"");

    let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["family"]);

    // Without the user's token there is nothing to exchange.
    let other = overage_claims("11111111-2222-4333-8444-555555555555");
    let err = graph.resolve(&other, None).await.unwrap_err();
    assert!(matches!(err, GraphError::NoAccessToken { .. }), "{err}");
}

#[tokio::test]
async fn three_pages_are_followed_and_only_groups_kept() {
    let entra = Entra::start().await;
    let auth = format!("Bearer {USER_TOKEN}");
    Mock::given(method("GET"))
        .and(path(ME))
        .and(query_param_is_missing("$skiptoken"))
        .and(header("authorization", auth.as_str()))
        .respond_with(page(
            vec![
                group(PHOTO_ADMINS, "photo-admins"),
                directory_role("62e90394-69f5-4237-9190-012177145e10", "Global Administrator"),
                group(STAFF, "staff"),
            ],
            Some(entra.next_link("RFNwdAIAAQAAAA-page2")),
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(query_param("$skiptoken", "RFNwdAIAAQAAAA-page2"))
        .and(header("authorization", auth.as_str()))
        .respond_with(page(
            vec![admin_unit("4d7e4b3f-0000-4a1b-8c2d-3e4f5a6b7c8d", "Seattle District"), group(FAMILY, "family")],
            Some(entra.next_link("RFNwdAIAAQAAAA-page3")),
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(query_param("$skiptoken", "RFNwdAIAAQAAAA-page3"))
        .and(header("authorization", auth.as_str()))
        .respond_with(page(
            vec![group(VPN, "vpn-users"), directory_role("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers")],
            None,
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("");

    let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["photo-admins", "staff", "family", "vpn-users"]);
}

#[tokio::test]
async fn security_groups_only_selects_and_keeps_security_groups() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(query_param("$select", "id,displayName,securityEnabled"))
        .respond_with(page(
            vec![security_group(PHOTO_ADMINS, "photo-admins", true), security_group(FAMILY, "Family (Microsoft 365)", false)],
            None,
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("security_groups_only = true");

    let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["photo-admins"]);
}

#[tokio::test]
async fn always_unites_token_groups_with_graph_without_duplicates() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins"), group(STAFF, "staff")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("trigger = \"always\"\nresolve_names = false");
    // The token has one group Graph also lists (in upper case), and one it does not.
    let upper = PHOTO_ADMINS.to_ascii_uppercase();
    let claims = claims_with_groups(OID, &[&upper, "on-prem-admins"]);

    let r = graph.resolve(&claims, Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["photo-admins", "on-prem-admins", "staff"]);
    assert_eq!(r.groups.len(), 3);
    assert!(!r.overage && r.membership_known());
}

#[tokio::test]
async fn no_overage_and_no_guids_makes_no_call() {
    let entra = Entra::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(500)).expect(0).mount(&entra.server).await;
    let graph = entra.graph("");

    let r = graph.resolve(&claims_with_groups(OID, &["family", "photos"]), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["family", "photos"]);
    assert!(r.membership_known());

    // Switched off, Graph is never asked, and an overage stays unknown.
    let toml = entra.toml("").replace("enabled = true", "enabled = false");
    let config = portcullis::Config::from_toml_str(&toml).unwrap();
    let graph = portcullis::graph::Graph::new(&config.graph, &config.oidc).unwrap();
    let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert!(r.groups.is_empty() && !r.membership_known());
}

#[tokio::test]
async fn throttled_then_success_after_retry_after() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(
            graph_error(429, "TooManyRequests", "Too many requests, please retry after some time.")
                .insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("timeout = \"5s\"");

    let started = Instant::now();
    let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&r), ["staff"]);
    assert!(started.elapsed() >= Duration::from_millis(950), "did not wait out Retry-After: {:?}", started.elapsed());
}

#[tokio::test]
async fn throttled_beyond_the_timeout_is_a_timeout_at_once() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(graph_error(429, "TooManyRequests", "Too many requests.").insert_header("Retry-After", "30"))
        .mount(&entra.server)
        .await;
    let graph = entra.graph("timeout = \"2s\"");

    let started = Instant::now();
    let err = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("429"), "{err}");
}

#[tokio::test]
async fn slow_graph_is_cut_off_at_the_timeout() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(page(vec![group(STAFF, "staff")], None).set_delay(Duration::from_secs(10)))
        .mount(&entra.server)
        .await;
    let graph = entra.graph("timeout = \"1s\"");

    let started = Instant::now();
    let err = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(2000), "took {took:?}");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("transitiveMemberOf"), "{err}");
    // The user's groups stay unknown; the caller must not grant on this.
    assert!(!graph.token_groups(&overage_claims(OID)).membership_known());
}

#[tokio::test]
async fn forbidden_names_the_application_permission() {
    let entra = Entra::start().await;
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(token_ok("app-token-without-permission"))
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .respond_with(graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("mode = \"client_credentials\"");

    let (logs, _guard) = Logs::capture();
    let err = graph.resolve(&overage_claims(OID), None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GraphError::Forbidden { .. }), "{text}");
    assert!(text.contains("403 Authorization_RequestDenied"), "{text}");
    assert!(text.contains("GroupMember.Read.All (application) with admin consent"), "{text}");

    // One log line, naming the permission, and no token or secret.
    let logged = logs.text();
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("Authorization_RequestDenied")).collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert!(lines[0].contains("WARN") && lines[0].contains("GroupMember.Read.All (application)"), "{logged}");
    assert!(!logged.contains("app-token-without-permission") && !logged.contains(CLIENT_SECRET), "{logged}");
}

#[tokio::test]
async fn forbidden_names_the_delegated_permission() {
    let entra = Entra::start().await;
    // With only User.Read, reading a group by ID is refused.
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("");

    let err = graph.resolve(&claims_with_groups(OID, &[PHOTO_ADMINS]), Some(USER_TOKEN)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("GroupMember.Read.All (delegated"), "{text}");
    assert!(!text.contains(USER_TOKEN), "{text}");
    // Falling back, the caller still has the token's group ID.
    assert_eq!(graph.token_groups(&claims_with_groups(OID, &[PHOTO_ADMINS])).header_values(GroupsHeader::Names), [PHOTO_ADMINS]);
}

#[tokio::test]
async fn expired_user_token_is_told_apart() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("");

    let err = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GraphError::Unauthorized { .. }), "{text}");
    assert!(text.contains("401 InvalidAuthenticationToken") && text.contains("expired"), "{text}");
}

#[tokio::test]
async fn rejected_app_token_is_replaced_on_the_next_lookup() {
    let entra = Entra::start().await;
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(token_ok("app-token"))
        .expect(2)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .respond_with(graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .mount(&entra.server)
        .await;
    let graph = entra.graph("mode = \"client_credentials\"");

    let err = graph.resolve(&overage_claims(OID), None).await.unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized { .. }), "{err}");
    let r = graph.resolve(&overage_claims(OID), None).await.unwrap();
    assert_eq!(names(&r), ["staff"]);
}

#[tokio::test]
async fn bad_client_secret_is_a_clear_error() {
    let entra = Entra::start().await;
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(token_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                 value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."
            ),
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&entra.server).await;
    let graph = entra.graph("mode = \"client_credentials\"");

    let (logs, _guard) = Logs::capture();
    let err = graph.resolve(&overage_claims(OID), None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GraphError::TokenEndpoint { .. }), "{text}");
    assert!(text.contains("invalid_client") && text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("not its Secret ID"), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    assert!(logs.text().contains("AADSTS7000215") && !logs.text().contains(CLIENT_SECRET), "{}", logs.text());
}

#[tokio::test]
async fn guid_groups_get_names_and_the_cache_spares_graph() {
    let entra = Entra::start().await;
    let deleted = "deadbeef-0000-4000-8000-000000000000";
    let directory = BatchDirectory::new(&[(PHOTO_ADMINS, "photo-admins"), (STAFF, "staff")]);
    let asked = directory.asked.clone();
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .and(header("authorization", format!("Bearer {USER_TOKEN}").as_str()))
        .respond_with(directory)
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("groups_header = \"both\"");
    let claims = claims_with_groups(OID, &[PHOTO_ADMINS, STAFF, deleted, "on-prem-admins"]);

    let first = graph.resolve(&claims, Some(USER_TOKEN)).await.unwrap();
    assert_eq!(names(&first), ["photo-admins", "staff", deleted, "on-prem-admins"]);
    assert_eq!(
        first.header_values(graph.groups_header()),
        [PHOTO_ADMINS, "photo-admins", STAFF, "staff", deleted, "on-prem-admins"]
    );
    let mut asked_ids = asked.lock().unwrap().clone();
    asked_ids.sort();
    assert_eq!(asked_ids, [PHOTO_ADMINS, STAFF, deleted], "only GUIDs are looked up, once each");

    // A second login within cache_ttl: same answer, no call (expect(1) above).
    let second = graph.resolve(&claims, Some(USER_TOKEN)).await.unwrap();
    assert_eq!(second, first);
    // The fallback, too, shows names it learnt.
    assert_eq!(names(&graph.token_groups(&claims)), ["photo-admins", "staff", deleted, "on-prem-admins"]);
}

#[tokio::test]
async fn more_than_twenty_guids_take_several_batches() {
    let entra = Entra::start().await;
    let ids: Vec<String> = (0..45).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    let named: Vec<(String, String)> = ids.iter().enumerate().map(|(i, id)| (id.clone(), format!("team-{i}"))).collect();
    let pairs: Vec<(&str, &str)> = named.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    Mock::given(method("POST"))
        .and(path("/v1.0/$batch"))
        .respond_with(BatchDirectory::new(&pairs))
        .expect(3)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("");
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();

    let r = graph.resolve(&claims_with_groups(OID, &refs), Some(USER_TOKEN)).await.unwrap();
    let expected: Vec<String> = (0..45).map(|i| format!("team-{i}")).collect();
    assert_eq!(names(&r), expected);
}

#[tokio::test]
async fn next_link_to_another_host_is_not_followed() {
    let entra = Entra::start().await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(page(
            vec![group(STAFF, "staff")],
            Some("https://graph.attacker.example/v1.0/me/transitiveMemberOf?$skiptoken=x".into()),
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = entra.graph("");

    let err = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap_err();
    assert!(err.to_string().contains("graph.attacker.example"), "{err}");
    // An incomplete list is no list: the user's groups stay unknown.
    assert!(!graph.token_groups(&overage_claims(OID)).membership_known());
}

#[tokio::test]
async fn client_credentials_asks_nothing_about_a_user_of_another_tenant() {
    let entra = Entra::start().await;
    // The app token and Graph would answer, were they asked.
    Mock::given(method("POST")).and(path(entra.token_path())).respond_with(token_ok("app-token-1")).mount(&entra.server).await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .respond_with(page(vec![group(PHOTO_ADMINS, "photo-admins")], None))
        .mount(&entra.server)
        .await;
    Mock::given(method("POST")).and(path("/v1.0/$batch")).respond_with(BatchDirectory::new(&[])).mount(&entra.server).await;
    let graph = entra.graph("mode = \"client_credentials\"");
    let (logs, _guard) = Logs::capture();

    // An overage login from another directory: its `oid` is not looked up.
    let mut foreign = overage_claims(OID);
    foreign.insert("tid".into(), json!(FOREIGN_TENANT));
    let err = graph.resolve(&foreign, None).await.unwrap_err();
    assert!(matches!(err, GraphError::ForeignTenant { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(FOREIGN_TENANT) && text.contains(TENANT), "{text}");

    // Its token's groups are not used either: GUIDs of another directory
    // are not resolved here, and a name it carries is nobody's here.
    let mut named = claims_with_groups(OID, &[PHOTO_ADMINS, "photo-admins"]);
    named.insert("tid".into(), json!(FOREIGN_TENANT));
    let mut enriched = named.clone();
    assert_eq!(graph.enrich(&mut enriched, None, false).await, Some(vec![]));
    assert_eq!(enriched["groups"], json!([]));
    // With groups required, the overage login stays refused (membership unknown).
    let mut required = foreign.clone();
    assert_eq!(graph.enrich(&mut required, None, true).await, Some(vec![]));
    assert!(required.contains_key("_claim_names"));

    // No `tid` at all: the same.
    let mut none = overage_claims(OID);
    none.remove("tid");
    let err = graph.resolve(&none, None).await.unwrap_err();
    assert!(err.to_string().contains("no `tid` claim"), "{err}");

    assert!(received(&entra).await.is_empty(), "Graph or the token endpoint was asked: {:?}", received(&entra).await);
    let logged = logs.text();
    assert!(
        logged.lines().any(|l| l.contains("WARN") && l.contains(&format!("tid {FOREIGN_TENANT}")) && l.contains("not asked")),
        "{logged}"
    );

    // A login from the configured directory (in any letter case) is looked up.
    let mut own = overage_claims(OID);
    own.insert("tid".into(), json!(TENANT.to_ascii_uppercase()));
    assert_eq!(names(&graph.resolve(&own, None).await.unwrap()), ["photo-admins"]);
}

/// The token endpoint's requests of one grant type.
async fn token_requests(entra: &Entra, grant: &str) -> usize {
    received(entra)
        .await
        .iter()
        .filter(|r| r.url.path() == entra.token_path())
        .filter(|r| url::form_urlencoded::parse(&r.body).any(|(k, v)| k == "grant_type" && v == grant))
        .count()
}

const OBO_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[tokio::test]
async fn obo_token_is_reused_for_the_same_user_within_its_lifetime() {
    let entra = Entra::start().await;
    let bob_token = "eyJ0eXAiOiJKV1QifQ.bob-access-token.sig";
    let bob = "0c9b8a7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d";
    for (assertion, obo) in [(USER_TOKEN, "obo-alice"), (bob_token, "obo-bob")] {
        Mock::given(method("POST"))
            .and(path(entra.token_path()))
            .and(form_has(&[("grant_type", OBO_GRANT), ("assertion", assertion)]))
            .respond_with(token_ok(obo))
            .mount(&entra.server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(ME))
        .and(header("authorization", "Bearer obo-alice"))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .expect(3)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(header("authorization", "Bearer obo-bob"))
        .respond_with(page(vec![group(FAMILY, "family")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    // Memberships are not cached, so every lookup asks Graph.
    let graph = entra.graph("mode = \"obo\"\ncache_ttl = \"0s\"");

    for _ in 0..2 {
        let r = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
        assert_eq!(names(&r), ["staff"]);
    }
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 1, "the second lookup reuses alice's On-Behalf-Of token");

    // Another user never gets alice's token: bob's is exchanged for him.
    let r = graph.resolve(&overage_claims(bob), Some(bob_token)).await.unwrap();
    assert_eq!(names(&r), ["family"]);
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 2);

    // A new login of alice (a new access token) still reuses hers.
    let r = graph.resolve(&overage_claims(OID), Some("eyJ0eXAiOiJKV1QifQ.alice-again.sig")).await.unwrap();
    assert_eq!(names(&r), ["staff"]);
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 2);
}

#[tokio::test]
async fn obo_token_is_exchanged_again_when_due_or_refused() {
    let entra = Entra::start().await;
    // A two-second token is replaced after half its lifetime.
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token_type": "Bearer", "expires_in": 2, "access_token": "obo-short"})),
        )
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .respond_with(graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET")).and(path(ME)).respond_with(page(vec![group(STAFF, "staff")], None)).mount(&entra.server).await;
    let graph = entra.graph("mode = \"obo\"\ncache_ttl = \"0s\"");

    // Graph refuses the token: it is forgotten, and the next lookup exchanges anew.
    let err = graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized { .. }), "{err}");
    graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 2);
    graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 2, "still fresh");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap();
    assert_eq!(token_requests(&entra, OBO_GRANT).await, 3, "due for replacement");
}

/// portcullis for the mock with certificate credentials in `[oidc]` and
/// `graph` in `[graph]` (no secret anywhere).
fn certificate_graph(entra: &Entra, graph: &str) -> portcullis::graph::Graph {
    let toml = entra.toml(graph).replace(&format!("client_secret = \"{CLIENT_SECRET}\""), &private_key_jwt_toml());
    assert!(!toml.contains(CLIENT_SECRET));
    let config = portcullis::Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("config: {e}"));
    portcullis::graph::Graph::new(&config.graph, &config.oidc).unwrap()
}

#[tokio::test]
async fn app_and_obo_tokens_are_requested_with_a_certificate() {
    let entra = Entra::start().await;
    let scope = entra.scope();
    let endpoint = format!("{}{}", entra.uri(), entra.token_path());
    let signed = || ClientAssertion { client_id: CLIENT_ID.into(), token_endpoint: endpoint.clone() };
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .and(form_has(&[("grant_type", "client_credentials"), ("scope", scope.as_str())]))
        .and(signed())
        .respond_with(token_ok("app-token-cert"))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .and(form_has(&[
            ("grant_type", OBO_GRANT),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", USER_TOKEN),
            ("scope", scope.as_str()),
        ]))
        .and(signed())
        .respond_with(token_ok("obo-cert"))
        .expect(1)
        .mount(&entra.server)
        .await;
    // Anything else at the token endpoint is refused as Entra would.
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(token_error(401, "invalid_client", 700027, "Client assertion failed signature validation."))
        .with_priority(10)
        .expect(0)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(users_path(OID)))
        .and(header("authorization", "Bearer app-token-cert"))
        .respond_with(page(vec![group(STAFF, "staff")], None))
        .expect(1)
        .mount(&entra.server)
        .await;
    Mock::given(method("GET"))
        .and(path(ME))
        .and(header("authorization", "Bearer obo-cert"))
        .respond_with(page(vec![group(FAMILY, "family")], None))
        .expect(1)
        .mount(&entra.server)
        .await;

    let graph = certificate_graph(&entra, "mode = \"client_credentials\"");
    assert_eq!(names(&graph.resolve(&overage_claims(OID), None).await.unwrap()), ["staff"]);
    let graph = certificate_graph(&entra, "mode = \"obo\"");
    assert_eq!(names(&graph.resolve(&overage_claims(OID), Some(USER_TOKEN)).await.unwrap()), ["family"]);

    // Each request had its own assertion (a fresh jti).
    let jtis: std::collections::HashSet<String> = received(&entra)
        .await
        .iter()
        .filter(|r| r.url.path() == entra.token_path())
        .map(|r| {
            let form = url::form_urlencoded::parse(&r.body).into_owned().collect();
            check_client_assertion(&form, CLIENT_ID, &endpoint).unwrap()["jti"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(jtis.len(), 2);
}

#[tokio::test]
async fn a_refused_client_assertion_is_explained() {
    let entra = Entra::start().await;
    Mock::given(method("POST"))
        .and(path(entra.token_path()))
        .respond_with(token_error(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        ))
        .expect(1)
        .mount(&entra.server)
        .await;
    let graph = certificate_graph(&entra, "mode = \"client_credentials\"");
    let (logs, _guard) = Logs::capture();
    let err = graph.resolve(&overage_claims(OID), None).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("AADSTS700027") && text.contains("upload the certificate"), "{text}");
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&received(&entra).await[0].body).into_owned().collect();
    let assertion = &form["client_assertion"];
    assert!(!logs.text().contains(assertion.as_str()) && !text.contains(assertion.as_str()));
}

#[test]
fn the_assertion_check_refuses_a_forged_or_mixed_request() {
    // The check the mocks apply must be able to fail: a JWT naming the
    // right certificate but signed with another key is refused...
    let endpoint = "http://127.0.0.1:1/t/oauth2/v2.0/token";
    let now = common::idp::now();
    let der_b64: String = CLIENT_CERT.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, der_b64).unwrap();
    let x5t = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        <sha2::Sha256 as sha2::Digest>::digest(&der),
    );
    let claims = json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": endpoint, "jti": "0123456789abcdef0", "iat": now, "nbf": now, "exp": now + 300});
    let forged = common::idp::sign_jwt(&json!({"alg": "RS256", "x5t#S256": x5t}), &claims, &common::idp::key(0));
    let mut form: std::collections::HashMap<String, String> = [
        ("client_id", CLIENT_ID),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", forged.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let err = check_client_assertion(&form, CLIENT_ID, endpoint).unwrap_err();
    assert!(err.contains("signature"), "{err}");

    // ...and so is a real one sent together with a secret, or for another endpoint.
    let config = portcullis::Config::from_toml_str(&format!(
        "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"{CLIENT_ID}\"\n{}\n",
        private_key_jwt_toml()
    ))
    .unwrap();
    let key = config.oidc.client_key.clone().unwrap();
    form.insert("client_assertion".into(), key.assertion(CLIENT_ID, endpoint));
    check_client_assertion(&form, CLIENT_ID, endpoint).unwrap();
    assert!(check_client_assertion(&form, CLIENT_ID, "http://127.0.0.1:1/other/token").unwrap_err().contains("aud"));
    form.insert("client_secret".into(), CLIENT_SECRET.into());
    assert!(check_client_assertion(&form, CLIENT_ID, endpoint).unwrap_err().contains("client_secret"));
}
