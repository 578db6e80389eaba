//! A mock OpenID Connect provider on wiremock, with real RS256-signed ID
//! tokens and a real JWKS.
//!
//! It serves discovery, `/authorize` (approves at once: 302 back to the
//! redirect URI with a code and the state; or, with [`Idp::offer_people`],
//! a page to choose who signs in), `/token` (checks the client
//! secret, the code, the redirect URI and the PKCE verifier), `/userinfo`,
//! `/jwks` and an end-session endpoint. Tests choose who logs in next with
//! [`Idp::set_user`], and can bend the next ID token with [`Idp::tamper`]
//! to check that portcullis refuses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const CLIENT_ID: &str = "portcullis-test";
pub const CLIENT_SECRET: &str = "client-secret-7b1f09d2";

/// A signing key with its key ID.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub private: RsaPrivateKey,
}

impl Key {
    pub fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }
}

/// Test keys are generated once per test binary (RSA generation is slow).
pub fn key(n: usize) -> Key {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..3)
            .map(|i| Key {
                kid: format!("test-key-{i}"),
                private: RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key"),
            })
            .collect()
    });
    keys[n].clone()
}

/// Signs `claims` with `header` (whose `alg` is left as given) using `key`.
pub fn sign_jwt(header: &Value, claims: &Value, key: &Key) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signer = SigningKey::<Sha256>::new(key.private.clone());
    let signature = signer.sign(signing_input.as_bytes()).to_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// What the token endpoint will put in the next ID token; tests may change
/// any part of it with [`Idp::tamper`].
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub header: Value,
    pub claims: Value,
    /// Which key signs it (index for [`key`]).
    pub key: usize,
    /// Replace the signature with garbage.
    pub bad_signature: bool,
    /// Drop the signature entirely (for `alg: none`).
    pub no_signature: bool,
}

type Tamper = Box<dyn Fn(&mut TokenSpec) + Send + Sync>;
/// Checks a token request's `private_key_jwt` client authentication.
type AssertionCheck = Box<dyn Fn(&HashMap<String, String>) -> Result<(), String> + Send + Sync>;
type AccessTokenMaker = Box<dyn Fn(&str, &Value) -> String + Send + Sync>;

struct Pending {
    nonce: Option<String>,
    challenge: Option<String>,
    redirect_uri: String,
    claims: Value,
}

#[derive(Default)]
struct State {
    user: Value,
    userinfo_extra: Value,
    codes: HashMap<String, Pending>,
    access_tokens: HashMap<String, Value>,
    refresh_tokens: HashMap<String, Value>,
    tamper: Option<Tamper>,
    assertion_check: Option<AssertionCheck>,
    access_token_maker: Option<AccessTokenMaker>,
    signing_key: usize,
    published_keys: Vec<usize>,
    authorize_error: Option<String>,
    counter: u64,
    expires_in: u64,
    refuse_refresh: bool,
    refresh_without_id_token: bool,
    token_delay: std::time::Duration,
    issued: Vec<Issued>,
    /// Whom `/authorize` offers to sign in, by name: the description shown
    /// and the claims. Empty: it signs in `user` at once.
    people: Vec<Person>,
}

/// Someone [`Idp::offer_people`] lets sign in.
#[derive(Clone, Debug)]
pub struct Person {
    /// What the sign-in button sends (`login_as=`).
    pub name: String,
    /// Shown beside the button.
    pub about: String,
    pub claims: Value,
}

/// The tokens of one token-endpoint answer.
#[derive(Clone, Debug)]
pub struct Issued {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// The mock provider.
pub struct Idp {
    pub server: MockServer,
    /// The issuer (the server's base URL, no trailing slash).
    pub issuer: String,
    state: Arc<Mutex<State>>,
}

impl Idp {
    pub async fn start() -> Idp {
        Self::from_server(MockServer::start().await).await
    }

    /// Starts on a given listener (to bring a provider up at an address
    /// portcullis already tries to reach).
    pub async fn start_on(listener: std::net::TcpListener) -> Idp {
        Self::from_server(MockServer::builder().listener(listener).start().await).await
    }

    async fn from_server(server: MockServer) -> Idp {
        let issuer = server.uri();
        let state = Arc::new(Mutex::new(State {
            user: json!({"sub": "user-1", "preferred_username": "alice", "email": "alice@example.com", "email_verified": true, "name": "Alice"}),
            userinfo_extra: json!({}),
            signing_key: 0,
            published_keys: vec![0],
            expires_in: 300,
            ..Default::default()
        }));
        let idp = Idp { server, issuer, state };
        idp.mount().await;
        idp
    }

    /// The claims of whoever logs in next (`sub` is required).
    pub fn set_user(&self, claims: Value) {
        self.state.lock().unwrap().user = claims;
    }

    /// Makes `/authorize` a sign-in page with one button per person (the
    /// demo's), and the end-session endpoint send the browser back to its
    /// `post_logout_redirect_uri`.
    pub fn offer_people(&self, people: Vec<Person>) {
        self.state.lock().unwrap().people = people;
    }

    /// Claims that only userinfo returns (merged over the user's claims there).
    pub fn set_userinfo_extra(&self, claims: Value) {
        self.state.lock().unwrap().userinfo_extra = claims;
    }

    /// Changes every ID token issued from now on.
    pub fn tamper(&self, f: impl Fn(&mut TokenSpec) + Send + Sync + 'static) {
        self.state.lock().unwrap().tamper = Some(Box::new(f));
    }

    /// Accepts token requests that carry a `client_assertion` (instead of
    /// the client secret) when `check` passes; its error is the answer's
    /// `error_description`.
    pub fn accept_client_assertions(
        &self,
        check: impl Fn(&HashMap<String, String>) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.state.lock().unwrap().assertion_check = Some(Box::new(check));
    }

    /// Makes the token endpoint hand out the access tokens `make` writes
    /// from the issuer and the user's claims (a JWT, signed or forged)
    /// instead of opaque ones; userinfo accepts them as usual.
    pub fn access_tokens(&self, make: impl Fn(&str, &Value) -> String + Send + Sync + 'static) {
        self.state.lock().unwrap().access_token_maker = Some(Box::new(make));
    }

    /// Signs with key `n` and publishes only it: a key rotation.
    pub fn rotate_to(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.signing_key = n;
        s.published_keys = vec![n];
    }

    /// Signs with key `n` but keeps publishing the old set (until
    /// [`Idp::publish`]).
    pub fn sign_with(&self, n: usize) {
        self.state.lock().unwrap().signing_key = n;
    }

    pub fn publish(&self, keys: &[usize]) {
        self.state.lock().unwrap().published_keys = keys.to_vec();
    }

    /// Lifetime of the access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.lock().unwrap().expires_in = secs;
    }

    /// Makes the token endpoint answer only after `delay`.
    pub fn set_token_delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().token_delay = delay;
    }

    /// Makes every refresh from now on fail with `invalid_grant` (the user
    /// was disabled, or the refresh token revoked).
    pub fn refuse_refresh(&self) {
        self.state.lock().unwrap().refuse_refresh = true;
    }

    /// Makes every refresh from now on answer without an ID token (as
    /// some providers do; the ID token is optional on a refresh).
    pub fn refresh_without_id_token(&self) {
        self.state.lock().unwrap().refresh_without_id_token = true;
    }

    /// How many refresh-token grants the token endpoint received.
    pub async fn refresh_count(&self) -> usize {
        self.requests_to("/token")
            .await
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("grant_type=refresh_token"))
            .count()
    }

    /// Every set of tokens the token endpoint handed out, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.lock().unwrap().issued.clone()
    }

    /// Makes `/authorize` answer with `error=...` instead of a code.
    pub fn refuse_next(&self, error: &str) {
        self.state.lock().unwrap().authorize_error = Some(error.to_string());
    }

    /// Requests received on `path`.
    pub async fn requests_to(&self, p: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == p)
            .collect()
    }

    async fn mount(&self) {
        let issuer = self.issuer.clone();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"),
                "end_session_endpoint": format!("{issuer}/logout"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            })))
            .mount(&self.server)
            .await;

        let state = Arc::clone(&self.state);
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(move |_: &Request| {
                let keys: Vec<Value> = state.lock().unwrap().published_keys.iter().map(|n| key(*n).jwk()).collect();
                ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
            })
            .mount(&self.server)
            .await;

        let state = Arc::clone(&self.state);
        Mock::given(method("GET"))
            .and(path("/authorize"))
            .respond_with(move |req: &Request| authorize(&state, req))
            .mount(&self.server)
            .await;

        let state = Arc::clone(&self.state);
        let issuer = self.issuer.clone();
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(move |req: &Request| token(&state, &issuer, req))
            .mount(&self.server)
            .await;

        let state = Arc::clone(&self.state);
        Mock::given(method("GET"))
            .and(path("/userinfo"))
            .respond_with(move |req: &Request| {
                let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = auth.strip_prefix("Bearer ").unwrap_or("");
                match state.lock().unwrap().access_tokens.get(token) {
                    Some(claims) => ResponseTemplate::new(200).set_body_json(claims),
                    None => ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})),
                }
            })
            .mount(&self.server)
            .await;

        let state = Arc::clone(&self.state);
        Mock::given(method("GET"))
            .and(path("/logout"))
            .respond_with(move |req: &Request| {
                let q = query(req);
                match q.get("post_logout_redirect_uri") {
                    Some(back) if !state.lock().unwrap().people.is_empty() => {
                        let mut to = url::Url::parse(back).expect("post_logout_redirect_uri parses");
                        if let Some(st) = q.get("state") {
                            to.query_pairs_mut().append_pair("state", st);
                        }
                        ResponseTemplate::new(302).insert_header("location", to.as_str())
                    }
                    _ => ResponseTemplate::new(200).set_body_string("signed out at the provider"),
                }
            })
            .mount(&self.server)
            .await;
    }
}

fn query(req: &Request) -> HashMap<String, String> {
    req.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn random_token(state: &mut State, prefix: &str) -> String {
    state.counter += 1;
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format!("{prefix}-{}-{}", state.counter, URL_SAFE_NO_PAD.encode(bytes))
}

fn authorize(state: &Mutex<State>, req: &Request) -> ResponseTemplate {
    let q = query(req);
    let mut s = state.lock().unwrap();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return ResponseTemplate::new(400).set_body_string("unknown client_id");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return ResponseTemplate::new(400).set_body_string("response_type must be code");
    }
    let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
        return ResponseTemplate::new(400).set_body_string("no redirect_uri");
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return ResponseTemplate::new(400).set_body_string("PKCE S256 required");
    }
    let state_param = q.get("state").cloned().unwrap_or_default();
    let mut target = url::Url::parse(&redirect_uri).expect("redirect_uri parses");
    let mut claims = s.user.clone();
    if !s.people.is_empty() {
        match q.get("login_as") {
            None => return choose_person(&s.people, &q),
            Some(name) => match s.people.iter().find(|p| &p.name == name) {
                Some(p) => claims = p.claims.clone(),
                None => return ResponseTemplate::new(400).set_body_string("no such person"),
            },
        }
    }
    if let Some(error) = s.authorize_error.take() {
        target.query_pairs_mut().append_pair("error", &error).append_pair("state", &state_param);
    } else {
        let code = random_token(&mut s, "code");
        s.codes.insert(
            code.clone(),
            Pending {
                nonce: q.get("nonce").cloned(),
                challenge: q.get("code_challenge").cloned(),
                redirect_uri: redirect_uri.clone(),
                claims,
            },
        );
        target.query_pairs_mut().append_pair("code", &code).append_pair("state", &state_param);
    }
    ResponseTemplate::new(302).insert_header("location", target.as_str())
}

/// The sign-in page of [`Idp::offer_people`]: the authorization request
/// again, with one button per person.
fn choose_person(people: &[Person], q: &HashMap<String, String>) -> ResponseTemplate {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let hidden: String = q
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
        .collect();
    let buttons: String = people
        .iter()
        .map(|p| {
            format!(
                "<li><button name=\"login_as\" value=\"{n}\">Sign in as {n}</button> <span>{a}</span></li>\n",
                n = escape(&p.name),
                a = escape(&p.about)
            )
        })
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
         <title>Demo identity provider</title><style>{DEMO_STYLE}</style></head>\n<body><main>\
         <p class=\"banner\">DEMO: not a real identity provider. Anyone can sign in as anyone here.</p>\
         <h1>Who are you?</h1><p>Pick a person of the family example; portcullis decides what each may do.</p>\
         <form method=\"get\" action=\"/authorize\">{hidden}<ul>\n{buttons}</ul></form></main></body></html>\n"
    );
    ResponseTemplate::new(200).set_body_raw(page, "text/html; charset=utf-8")
}

const DEMO_STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;display:flex;justify-content:center}\
main{max-width:30rem;width:100%}.banner{background:#b00020;color:#fff;padding:.6rem .8rem;border-radius:8px;font-weight:600}\
ul{list-style:none;padding:0}li{margin:.6rem 0;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}\
button{font:inherit;font-weight:600;padding:.5rem 1rem;border-radius:8px;border:1px solid #888;min-width:11rem;cursor:pointer}\
span{color:#777}";

fn token_error(status: u16, error: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": error, "error_description": format!("mock provider: {error}")}))
}

fn client_authenticated(req: &Request, f: &HashMap<String, String>) -> bool {
    if let Some(auth) = req.headers.get("authorization").and_then(|v| v.to_str().ok()) {
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let expected = STANDARD.encode(format!(
                "{}:{}",
                url::form_urlencoded::byte_serialize(CLIENT_ID.as_bytes()).collect::<String>(),
                url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect::<String>()
            ));
            return b64 == expected;
        }
    }
    f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

fn token(state: &Mutex<State>, issuer: &str, req: &Request) -> ResponseTemplate {
    let f = form(req);
    let mut s = state.lock().unwrap();
    match (&s.assertion_check, f.contains_key("client_assertion")) {
        (Some(check), true) => {
            if let Err(why) = check(&f) {
                return ResponseTemplate::new(401)
                    .set_body_json(json!({"error": "invalid_client", "error_description": format!("mock provider: {why}")}));
            }
        }
        _ if !client_authenticated(req, &f) => return token_error(401, "invalid_client"),
        _ => {}
    }
    if f.get("grant_type").map(String::as_str) == Some("client_credentials") {
        return client_credentials(&s, issuer, &f);
    }
    let (claims, nonce, no_id_token) = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(pending) = f.get("code").and_then(|c| s.codes.remove(c)) else {
                return token_error(400, "invalid_grant");
            };
            if f.get("redirect_uri") != Some(&pending.redirect_uri) {
                return token_error(400, "invalid_grant");
            }
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if pending.challenge.as_deref() != Some(computed.as_str()) {
                return token_error(400, "invalid_grant");
            }
            (pending.claims, pending.nonce, false)
        }
        Some("refresh_token") => {
            if s.refuse_refresh {
                return token_error(400, "invalid_grant");
            }
            let Some(claims) = f.get("refresh_token").and_then(|t| s.refresh_tokens.remove(t)) else {
                return token_error(400, "invalid_grant");
            };
            // A refresh reflects the user as the provider knows them now.
            let current = if s.user.get("sub") == claims.get("sub") { s.user.clone() } else { claims };
            (current, None, s.refresh_without_id_token)
        }
        _ => return token_error(400, "unsupported_grant_type"),
    };

    let now = now();
    let mut id_claims = json!({
        "iss": issuer,
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
    });
    if let Some(n) = &nonce {
        id_claims["nonce"] = json!(n);
    }
    for (k, v) in claims.as_object().cloned().unwrap_or_default() {
        id_claims[k] = v;
    }
    let signing_key = s.signing_key;
    let mut spec = TokenSpec {
        header: json!({"alg": "RS256", "typ": "JWT", "kid": key(signing_key).kid}),
        claims: id_claims,
        key: signing_key,
        bad_signature: false,
        no_signature: false,
    };
    if let Some(t) = &s.tamper {
        t(&mut spec);
    }
    let mut id_token = sign_jwt(&spec.header, &spec.claims, &key(spec.key));
    if spec.bad_signature {
        let (head, _) = id_token.rsplit_once('.').unwrap();
        id_token = format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
    }
    if spec.no_signature {
        let (head, _) = id_token.rsplit_once('.').unwrap();
        id_token = format!("{head}.");
    }

    let access_token = match &s.access_token_maker {
        Some(make) => make(issuer, &claims),
        None => random_token(&mut s, "at"),
    };
    let refresh_token = random_token(&mut s, "rt");
    let mut userinfo = claims.clone();
    for (k, v) in s.userinfo_extra.as_object().cloned().unwrap_or_default() {
        userinfo[k] = v;
    }
    s.access_tokens.insert(access_token.clone(), userinfo);
    s.refresh_tokens.insert(refresh_token.clone(), claims);
    s.issued.push(Issued {
        id_token: id_token.clone(),
        access_token: access_token.clone(),
        refresh_token: refresh_token.clone(),
    });
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": s.expires_in,
        "refresh_token": refresh_token,
        "id_token": id_token,
    });
    if no_id_token {
        body.as_object_mut().unwrap().remove("id_token");
    }
    ResponseTemplate::new(200).set_delay(s.token_delay).set_body_json(body)
}

/// The name the client credentials grant's access tokens give the client
/// (as Keycloak names a client's service account).
pub const SERVICE_ACCOUNT: &str = "service-account-backup";

/// The client credentials grant (a script's own client): a JWT access
/// token for the `audience` asked for (else the client itself), with the
/// scopes asked for; no ID token, no refresh token.
fn client_credentials(s: &State, issuer: &str, f: &HashMap<String, String>) -> ResponseTemplate {
    let now = now();
    let claims = json!({
        "iss": issuer,
        "sub": "client-backup",
        "preferred_username": SERVICE_ACCOUNT,
        "aud": f.get("audience").map(String::as_str).unwrap_or(CLIENT_ID),
        "azp": CLIENT_ID,
        "scope": f.get("scope").map(String::as_str).unwrap_or(""),
        "iat": now,
        "exp": now + s.expires_in,
    });
    let k = key(s.signing_key);
    let access_token = sign_jwt(&json!({"alg": "RS256", "typ": "at+jwt", "kid": k.kid}), &claims, &k);
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": s.expires_in,
    }))
}

impl Idp {
    /// A back-channel logout token as the provider would send it, with
    /// `extra` merged over the standard claims (a `null` removes a claim).
    pub fn logout_token(&self, extra: Value) -> String {
        let mut claims = json!({
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now(),
            "exp": now() + 120,
            "jti": format!("jti-{}", rand::random::<u64>()),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(&k);
            } else {
                claims[k] = v;
            }
        }
        let signing_key = self.state.lock().unwrap().signing_key;
        let k = key(signing_key);
        sign_jwt(&json!({"alg": "RS256", "typ": "logout+jwt", "kid": k.kid}), &claims, &k)
    }
}
