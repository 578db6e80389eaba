//! A mock Entra ID on wiremock: the token endpoint of
//! login.microsoftonline.com and the Microsoft Graph routes portcullis
//! calls, answering in the shapes Microsoft documents (directoryObject
//! collections with `@odata.type` and `@odata.nextLink`, `$batch`
//! responses, OAuth error bodies with `error_codes`, Graph error bodies
//! with `innerError`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use sha2::{Digest as _, Sha256};

use portcullis::Config;
use portcullis::graph::Graph;
use serde_json::{Map, Value, json};
use wiremock::{Match, MockServer, Request, ResponseTemplate};

pub const TENANT: &str = "0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11";
pub const CLIENT_ID: &str = "5d3c7a2e-8f41-4b6a-9c0d-2e7f1a3b4c5d";
pub const CLIENT_SECRET: &str = "Xq38Q~graph-test-secret.9fK2";
/// Another Entra directory than the one portcullis is configured for.
pub const FOREIGN_TENANT: &str = "f0f0f0f0-1111-4222-8333-444444444444";
/// The user in most tests (the example user of the Graph reference).
pub const OID: &str = "6e7b768e-07e2-4810-8459-485f84f8f204";
/// The user's access token from the login (opaque to portcullis).
pub const USER_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6InVzZXIifQ.user-access-token.sig";

/// Group object IDs used across the tests.
pub const PHOTO_ADMINS: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
pub const STAFF: &str = "7c1e2b3a-9d8f-4e6a-b5c4-d3e2f1a0b9c8";
pub const FAMILY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
pub const VPN: &str = "c0ffee00-1234-4abc-9def-56789abcdef0";

/// The test certificate (tests/fixtures) and its private key.
pub const CLIENT_CERT: &str = include_str!("../fixtures/entra-client.crt");
pub const CLIENT_KEY: &str = include_str!("../fixtures/entra-client.key");

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// `[oidc]` lines for certificate credentials with the test key.
pub fn private_key_jwt_toml() -> String {
    format!(
        "client_auth = \"private_key_jwt\"\nclient_key_file = {:?}\nclient_certificate_file = {:?}",
        fixture("entra-client.key"),
        fixture("entra-client.crt")
    )
}

/// Checks a token request's client authentication the way Entra ID does
/// for `private_key_jwt`: no secret, the RFC 7523 assertion type, an RS256
/// JWT whose `x5t#S256` is the SHA-256 of the certificate's DER and whose
/// signature verifies with the certificate's public key, `iss` = `sub` =
/// the client ID, `aud` = the token endpoint, a `jti`, and a short, current
/// validity. Returns the assertion's claims, or what is wrong.
pub fn check_client_assertion(
    form: &HashMap<String, String>,
    client_id: &str,
    token_endpoint: &str,
) -> Result<Value, String> {
    if form.contains_key("client_secret") {
        return Err("a client_secret was sent".into());
    }
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return Err(format!("client_assertion_type is {:?}", form.get("client_assertion_type")));
    }
    if form.get("client_id").is_some_and(|c| c != client_id) {
        return Err(format!("client_id is {:?}", form.get("client_id")));
    }
    let jwt = form.get("client_assertion").ok_or("no client_assertion")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [head, body, sig] = parts.as_slice() else { return Err("the assertion is not a JWS".into()) };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    let (header, claims) = (decode(head)?, decode(body)?);

    // The certificate's DER, straight from the PEM.
    let der_b64: String = CLIENT_CERT.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der_b64).unwrap();
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
    if header["alg"] != "RS256" || header["x5t#S256"] != json!(thumbprint) {
        return Err(format!("header {header}, expected RS256 and x5t#S256 {thumbprint}"));
    }
    use x509_cert::der::{DecodePem as _, Encode as _};
    let certificate = x509_cert::Certificate::from_pem(CLIENT_CERT.as_bytes()).unwrap();
    let spki = certificate.tbs_certificate.subject_public_key_info.to_der().unwrap();
    let public = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
    let signature = Signature::try_from(URL_SAFE_NO_PAD.decode(sig).map_err(|e| e.to_string())?.as_slice())
        .map_err(|e| e.to_string())?;
    VerifyingKey::<Sha256>::new(public)
        .verify(format!("{head}.{body}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify with the certificate's key".to_string())?;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let num = |name: &str| claims[name].as_u64().ok_or(format!("no numeric {name}"));
    let (iat, nbf, exp) = (num("iat")?, num("nbf")?, num("exp")?);
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err(format!("iss/sub are {} / {}", claims["iss"], claims["sub"]));
    }
    if claims["aud"] != token_endpoint {
        return Err(format!("aud is {}, expected {token_endpoint}", claims["aud"]));
    }
    if claims["jti"].as_str().is_none_or(|j| j.len() < 16) {
        return Err(format!("jti is {}", claims["jti"]));
    }
    if nbf > now + 5 || iat > now + 5 || exp <= now || exp > iat + 600 {
        return Err(format!("validity iat {iat} nbf {nbf} exp {exp} at {now}"));
    }
    Ok(claims)
}

/// Matches a token request authenticated with a valid client assertion
/// for `client_id` at `token_endpoint` (see [`check_client_assertion`]).
pub struct ClientAssertion {
    pub client_id: String,
    pub token_endpoint: String,
}

impl Match for ClientAssertion {
    fn matches(&self, request: &Request) -> bool {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
        check_client_assertion(&form, &self.client_id, &self.token_endpoint).is_ok()
    }
}

pub struct Entra {
    pub server: MockServer,
}

impl Entra {
    pub async fn start() -> Entra {
        Entra { server: MockServer::start().await }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// portcullis's configuration with the issuer, the authority and Graph
    /// all on the mock; `graph` adds lines to the `[graph]` table.
    pub fn toml(&self, graph: &str) -> String {
        let uri = self.uri();
        format!(
            r#"
public_url = "https://auth.example.com"
[oidc]
issuer = "{uri}/{TENANT}/v2.0"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
insecure_http = true
[graph]
enabled = true
authority = "{uri}"
graph_url = "{uri}"
{graph}
"#
        )
    }

    pub fn config(&self, graph: &str) -> Config {
        Config::from_toml_str(&self.toml(graph)).unwrap_or_else(|e| panic!("config: {e}"))
    }

    pub fn graph(&self, graph: &str) -> Graph {
        {
            let config = self.config(graph);
            Graph::new(&config.graph, &config.oidc).unwrap_or_else(|e| panic!("Graph::new: {e}"))
        }
    }

    /// The token endpoint's path for the test tenant.
    pub fn token_path(&self) -> String {
        format!("/{TENANT}/oauth2/v2.0/token")
    }

    /// The scope portcullis asks for: Graph's `/.default` (here, the mock's).
    pub fn scope(&self) -> String {
        format!("{}/.default", self.uri())
    }

    /// A `@odata.nextLink` for the signed-in user's memberships.
    pub fn next_link(&self, skiptoken: &str) -> String {
        format!("{}/v1.0/me/transitiveMemberOf?$select=id,displayName&$top=999&$skiptoken={skiptoken}", self.uri())
    }
}

/// Claims of an Entra ID token whose user is in too many groups: no
/// `groups`, a pointer to the (deprecated) Azure AD Graph instead.
pub fn overage_claims(oid: &str) -> Map<String, Value> {
    obj(json!({
        "sub": format!("pairwise-{oid}"),
        "oid": oid,
        "tid": TENANT,
        "preferred_username": "alice@contoso.example",
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {
            "src1": {"endpoint": format!("https://graph.windows.net/{TENANT}/users/{oid}/getMemberObjects")}
        }
    }))
}

/// Claims with `groups` as sent when the user is in few enough groups.
pub fn claims_with_groups(oid: &str, groups: &[&str]) -> Map<String, Value> {
    obj(json!({
        "sub": format!("pairwise-{oid}"),
        "oid": oid,
        "tid": TENANT,
        "preferred_username": "alice@contoso.example",
        "groups": groups,
    }))
}

/// Every request the mock received (the token endpoint's and Graph's).
pub async fn received(entra: &Entra) -> Vec<Request> {
    entra.server.received_requests().await.unwrap_or_default()
}

pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

pub fn group(id: &str, name: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": name})
}

pub fn security_group(id: &str, name: &str, security_enabled: bool) -> Value {
    json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": name, "securityEnabled": security_enabled})
}

pub fn directory_role(id: &str, name: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.directoryRole", "id": id, "displayName": name})
}

pub fn admin_unit(id: &str, name: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.administrativeUnit", "id": id, "displayName": name})
}

/// One page of a directoryObject collection.
pub fn page(items: Vec<Value>, next: Option<String>) -> ResponseTemplate {
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects(id,displayName)",
        "value": items,
    });
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

/// A successful token endpoint answer.
pub fn token_ok(access_token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access_token,
    }))
}

/// A token endpoint error as Entra sends it.
pub fn token_error(status: u16, error: &str, code: u64, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description}\r\nTrace ID: 2a3b4c5d-0000-4000-8000-000000000001\r\n\
             Correlation ID: 9f8e7d6c-0000-4000-8000-000000000002\r\nTimestamp: 2025-01-10 08:10:04Z"
        ),
        "error_codes": [code],
        "timestamp": "2025-01-10 08:10:04Z",
        "trace_id": "2a3b4c5d-0000-4000-8000-000000000001",
        "correlation_id": "9f8e7d6c-0000-4000-8000-000000000002",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    }))
}

/// A Microsoft Graph error body.
pub fn graph_error_body(code: &str, message: &str) -> Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2025-01-10T08:10:04",
                "request-id": "361c8c2b-fe37-4e6d-af08-1ab3a19ca6b8",
                "client-request-id": "361c8c2b-fe37-4e6d-af08-1ab3a19ca6b8"
            }
        }
    })
}

pub fn graph_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(graph_error_body(code, message))
}

/// Answers a `POST /v1.0/$batch` of `GET /groups/{id}` requests from a
/// directory of group names; IDs not in it get Graph's 404.
pub struct BatchDirectory {
    pub names: HashMap<String, String>,
    /// Group IDs asked for, in every batch so far.
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl BatchDirectory {
    pub fn new(names: &[(&str, &str)]) -> BatchDirectory {
        BatchDirectory {
            names: names.iter().map(|(id, n)| (id.to_string(), n.to_string())).collect(),
            asked: Arc::default(),
        }
    }
}

impl wiremock::Respond for BatchDirectory {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(_) => return graph_error(400, "BadRequest", "Invalid batch payload format."),
        };
        let requests = body["requests"].as_array().cloned().unwrap_or_default();
        if requests.is_empty() || requests.len() > 20 {
            return graph_error(400, "BadRequest", "Invalid batch payload: 1 to 20 requests are allowed.");
        }
        let mut responses = Vec::new();
        for r in requests {
            let url = r["url"].as_str().unwrap_or("");
            let id = url.strip_prefix("/groups/").and_then(|rest| rest.split('?').next()).unwrap_or("");
            // A malformed sub-request fails the whole batch, so the test sees it.
            if r["method"] != "GET" || !url.ends_with("?$select=id,displayName") || r["id"].as_str().is_none() {
                return graph_error(400, "BadRequest", &format!("unexpected batch sub-request {r}"));
            }
            self.asked.lock().unwrap().push(id.to_string());
            let response = match self.names.get(id) {
                Some(name) => json!({
                    "id": r["id"], "status": 200,
                    "headers": {"Content-Type": "application/json;odata.metadata=minimal"},
                    "body": {
                        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups(id,displayName)/$entity",
                        "id": id, "displayName": name
                    }
                }),
                None => json!({
                    "id": r["id"], "status": 404,
                    "headers": {"Content-Type": "application/json"},
                    "body": graph_error_body(
                        "Request_ResourceNotFound",
                        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present.")
                    )
                }),
            };
            responses.push(response);
        }
        // Graph answers sub-requests in any order.
        responses.reverse();
        ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
    }
}

/// Matches a form-encoded body that has every given pair.
pub struct FormHas(pub Vec<(String, String)>);

pub fn form_has(pairs: &[(&str, &str)]) -> FormHas {
    FormHas(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

impl Match for FormHas {
    fn matches(&self, request: &Request) -> bool {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
        self.0.iter().all(|(k, v)| form.get(k) == Some(v))
    }
}

/// Captures what portcullis logs on this thread (tests run on a
/// current-thread runtime, so every log line of the test lands here).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Another test thread may have cached "nobody listens" for a
        // callsite before this subscriber existed: ask every callsite again.
        tracing::callsite::rebuild_interest_cache();
        (logs.clone(), guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
