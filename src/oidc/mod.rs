//! OpenID Connect: discovery, the login round trip, token checks, logout.
//!
//! Discovery runs in the background until it succeeds, so portcullis starts
//! (and answers `/readyz` with the reason) while the provider is down. A
//! login is the authorization code flow with `state`, `nonce` and PKCE S256;
//! the ID token is checked against the provider's JWKS (fetched again once
//! when a token names a key we do not know), `iss`, `aud`, `azp`, `exp`,
//! `iat`, `nbf` and `nonce`, then userinfo claims are merged in. An access
//! token's claims are read only when it is a JWT that verifies against the
//! same JWKS, names the configured issuer and has not expired.
//!
//! At the token endpoint portcullis authenticates with its client secret
//! (HTTP Basic, or in the body when the provider supports only that), or
//! with `oidc.client_auth = "private_key_jwt"` with a fresh client
//! assertion signed by its key ([`crate::assertion`]) and no secret.

pub mod config;
mod http;
mod tokens;

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKey as _, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use url::Url;

use config::OidcConfig;
use crate::claims::Claims;
use crate::clock::unix_now;
use http::{LimitedHttp, describe_claims_error, describe_discovery, describe_reqwest, describe_token_error, read_limited};
pub use tokens::{BearerError, decode_payload};
use tokens::{asymmetric_algs, check_claims_size};

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Longest a login may take between start and callback.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Least time between two JWKS refetches caused by unknown key IDs.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Largest response body accepted from the provider (discovery, JWKS,
/// token, userinfo).
const MAX_BODY: usize = 1024 * 1024;
/// Largest claims accepted for one login (ID token and userinfo together,
/// as JSON): a provider sending more gets a clear error, not a session too
/// big for the store or headers too big for the proxy.
pub const MAX_CLAIMS: usize = 64 * 1024;

/// What went wrong in a login. The `Display` text is safe to show users and
/// to log: it never contains a token or secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not available yet: {0}")]
    NotReady(String),
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    #[error("the identity provider's answer failed validation: {0}")]
    Invalid(String),
}

/// A login in progress, kept sealed in a cookie in the user's browser.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginAttempt {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to send the browser after the callback.
    pub rd: String,
    pub created_at: u64,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt").field("rd", &self.rd).field("created_at", &self.created_at).finish()
    }
}

/// The result of a successful callback.
pub struct LoginResult {
    /// Claims from the verified ID token.
    pub id_claims: Claims,
    /// Claims from userinfo, when the provider has that endpoint.
    pub userinfo_claims: Option<Claims>,
    pub id_token: String,
    pub access_token: String,
    /// The access token's claims, when it is a JWT that verified (and
    /// `identity.claim_sources` reads it).
    pub access_claims: Option<Claims>,
    pub refresh_token: Option<String>,
    /// Access token lifetime as the provider told it.
    pub expires_in: Option<Duration>,
}

/// Whom a valid back-channel logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
}

/// Oldest `iat` accepted on a logout token.
pub const LOGOUT_TOKEN_MAX_AGE: Duration = Duration::from_secs(300);

/// The result of a successful refresh.
pub struct Refreshed {
    pub id_token: Option<String>,
    pub id_claims: Option<Claims>,
    pub userinfo_claims: Option<Claims>,
    pub access_token: String,
    /// As [`LoginResult::access_claims`].
    pub access_claims: Option<Claims>,
    /// A rotated refresh token, when the provider sends one.
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// What discovery found, and the client built from it.
struct Provider {
    client: Client,
    jwks_uri: openidconnect::JsonWebKeySetUrl,
    end_session: Option<Url>,
    /// The algorithms the provider says it signs with.
    signing_algs: Vec<CoreJwsSigningAlgorithm>,
    jwks: ArcSwap<CoreJsonWebKeySet>,
    last_refetch: Mutex<Option<Instant>>,
}

/// The identity provider as portcullis sees it.
pub struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: crate::settings::Secret,
    /// `private_key_jwt`: signs a client assertion for each token request.
    client_key: Option<Arc<crate::assertion::ClientKey>>,
    scopes: Vec<String>,
    leeway: Duration,
    /// Whether `identity.claim_sources` reads the access token.
    read_access_token: bool,
    redirect_url: String,
    http: LimitedHttp,
    provider: ArcSwapOption<Provider>,
    not_ready_reason: ArcSwap<String>,
}

impl Oidc {
    /// Prepares the client; call [`Oidc::discover_in_background`] next.
    /// For `[oidc]`, with `redirect_url` the callback registered at the
    /// provider; `read_access_token`: claims are read from access tokens.
    pub fn new(config: &OidcConfig, redirect_url: &url::Url, read_access_token: bool) -> Arc<Oidc> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client with static settings");
        Arc::new(Oidc {
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            client_key: config.client_key.clone(),
            scopes: config.scopes.clone(),
            leeway: config.leeway,
            read_access_token,
            redirect_url: redirect_url.to_string(),
            http: LimitedHttp(http),
            provider: ArcSwapOption::empty(),
            not_ready_reason: ArcSwap::from_pointee("discovery has not completed yet".into()),
        })
    }

    /// Runs discovery until it succeeds, backing off from 1 s to 30 s.
    pub fn discover_in_background(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match this.discover().await {
                    Ok(()) => {
                        tracing::info!(issuer = %this.issuer, "identity provider discovered");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %this.issuer, error = %e, retry_in = ?delay, "identity provider discovery failed");
                        this.not_ready_reason.store(Arc::new(e.to_string()));
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        });
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<String> {
        match self.provider.load().as_ref() {
            Some(_) => None,
            None => Some(self.not_ready_reason.load().to_string()),
        }
    }

    fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        self.provider.load_full().ok_or_else(|| OidcError::NotReady(self.not_ready_reason.load().to_string()))
    }

    async fn discover(&self) -> Result<(), OidcError> {
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| OidcError::Invalid(format!("issuer URL: {e}")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(describe_discovery(&e)))?;
        let basic_ok = metadata.token_endpoint_auth_methods_supported().is_none_or(|methods| {
            methods.iter().any(|m| *m == openidconnect::core::CoreClientAuthMethod::ClientSecretBasic)
        });
        let key_jwt_listed = metadata.token_endpoint_auth_methods_supported().is_none_or(|methods| {
            methods.iter().any(|m| *m == openidconnect::core::CoreClientAuthMethod::PrivateKeyJwt)
        });
        if self.client_key.is_some() && !key_jwt_listed {
            tracing::warn!(
                issuer = %self.issuer,
                "the identity provider does not list private_key_jwt in token_endpoint_auth_methods_supported; \
                 sign-ins will fail if it does not accept client assertions"
            );
        }
        let signing_algs = metadata.id_token_signing_alg_values_supported().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        let end_session = metadata.additional_metadata().end_session_endpoint.as_ref().map(|u| u.url().clone());
        // With a client key there is no secret: the client ID goes in the
        // body, next to the assertion added to each token request.
        let secret = match self.client_key {
            Some(_) => None,
            None => Some(ClientSecret::new(self.client_secret.expose().to_string())),
        };
        let mut client = CoreClient::from_provider_metadata(metadata, ClientId::new(self.client_id.clone()), secret)
            .set_redirect_uri(RedirectUrl::new(self.redirect_url.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?);
        if !basic_ok || self.client_key.is_some() {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        self.provider.store(Some(Arc::new(Provider {
            client,
            jwks_uri,
            end_session,
            signing_algs,
            jwks: ArcSwap::from_pointee(jwks),
            last_refetch: Mutex::new(None),
        })));
        Ok(())
    }

    /// Starts a login: the provider URL to send the browser to, and the
    /// attempt to keep in the browser's login cookie.
    pub fn begin(&self, rd: &Url) -> Result<(Url, LoginAttempt), OidcError> {
        let provider = self.provider()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            provider.client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in self.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            LoginAttempt {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                rd: rd.to_string(),
                created_at: unix_now(),
            },
        ))
    }

    /// Finishes a login: exchanges the code, validates the ID token and
    /// fetches userinfo.
    pub async fn finish(&self, code: &str, attempt: &LoginAttempt) -> Result<LoginResult, OidcError> {
        let provider = self.provider()?;
        let mut request = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Invalid(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.verifier.clone()));
        if let Some(assertion) = self.client_assertion(&provider) {
            request = request
                .add_extra_param("client_assertion_type", crate::assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response: CoreTokenResponse = request.request_async(&self.http).await.map_err(describe_token_error)?;

        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Invalid("the token response has no id_token".into()))?
            .clone();
        let nonce = Nonce::new(attempt.nonce.clone());
        self.verify_id_token(&provider, &id_token, Some(&nonce)).await?;
        let id_token_text = id_token.to_string();
        let id_claims = decode_payload(&id_token_text)?;
        self.check_extra_claims(&id_claims)?;

        let access_token = response.access_token().clone();
        let userinfo_claims = self.userinfo(&provider, &access_token, &id_claims).await?;
        check_claims_size(&id_claims, userinfo_claims.as_ref())?;
        let access_claims = self.access_token_claims(&provider, access_token.secret()).await;

        Ok(LoginResult {
            id_claims,
            userinfo_claims,
            id_token: id_token_text,
            access_token: access_token.secret().clone(),
            access_claims,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in(),
        })
    }

    /// With `private_key_jwt`: a fresh client assertion for the provider's
    /// token endpoint (its `aud`).
    fn client_assertion(&self, provider: &Provider) -> Option<String> {
        let key = self.client_key.as_ref()?;
        let token_url = provider.client.token_uri()?;
        Some(key.assertion(&self.client_id, token_url.as_str()))
    }

    /// The provider's issuer, as configured.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Uses a refresh token: new tokens, a verified ID token if the
    /// provider sends one, and fresh userinfo claims.
    pub async fn refresh(&self, refresh_token: &str, subject: &str) -> Result<Refreshed, OidcError> {
        let provider = self.provider()?;
        let refresh_token = openidconnect::RefreshToken::new(refresh_token.to_string());
        let mut request = provider
            .client
            .exchange_refresh_token(&refresh_token)
            .map_err(|e| OidcError::Invalid(format!("token endpoint: {e}")))?;
        if let Some(assertion) = self.client_assertion(&provider) {
            request = request
                .add_extra_param("client_assertion_type", crate::assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response: CoreTokenResponse = request.request_async(&self.http).await.map_err(describe_token_error)?;
        let (id_token, id_claims) = match response.id_token() {
            Some(token) => {
                self.verify_id_token(&provider, token, None).await?;
                let text = token.to_string();
                let claims = decode_payload(&text)?;
                self.check_extra_claims(&claims)?;
                if claims.get("sub").and_then(|v| v.as_str()) != Some(subject) {
                    return Err(OidcError::Invalid("the refreshed ID token is for another subject".into()));
                }
                (Some(text), Some(claims))
            }
            None => (None, None),
        };
        let access_token = response.access_token().clone();
        let sub_claims = match &id_claims {
            Some(c) => c.clone(),
            None => {
                let mut c = Claims::new();
                c.insert("sub".into(), serde_json::Value::String(subject.to_string()));
                c
            }
        };
        let userinfo_claims = self.userinfo(&provider, &access_token, &sub_claims).await?;
        check_claims_size(&sub_claims, userinfo_claims.as_ref())?;
        let access_claims = self.access_token_claims(&provider, access_token.secret()).await;
        Ok(Refreshed {
            id_token,
            id_claims,
            userinfo_claims,
            access_token: access_token.secret().clone(),
            access_claims,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in(),
        })
    }

    async fn verify_id_token(&self, provider: &Provider, token: &CoreIdToken, nonce: Option<&Nonce>) -> Result<(), OidcError> {
        match self.check_signature_and_claims(provider, token, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // The provider may have rotated its keys: fetch the JWKS again, once.
                if self.refetch_jwks(provider).await? {
                    self.check_signature_and_claims(provider, token, nonce).map_err(describe_claims_error)
                } else {
                    Err(OidcError::Invalid("the ID token is signed with a key the provider does not publish".into()))
                }
            }
            other => other.map_err(describe_claims_error),
        }
    }

    fn check_signature_and_claims(
        &self,
        provider: &Provider,
        token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<(), ClaimsVerificationError> {
        let jwks = CoreJsonWebKeySet::clone(&provider.jwks.load());
        let leeway = chrono::Duration::from_std(self.leeway).unwrap_or_default();
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            IssuerUrl::new(self.issuer.clone()).map_err(|e| ClaimsVerificationError::Other(e.to_string()))?,
            jwks,
        )
        .set_allowed_algs(asymmetric_algs())
        .set_time_fn(move || chrono::Utc::now() - leeway)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + leeway { Err(format!("issued in the future ({iat})")) } else { Ok(()) }
        });
        // A refreshed ID token need not carry the login's nonce.
        let expected = nonce.map(|n| n.secret().clone());
        let check_nonce = move |got: Option<&Nonce>| match (&expected, got) {
            (None, _) => Ok(()),
            (Some(want), Some(got)) if want == got.secret() => Ok(()),
            _ => Err("the nonce does not match".to_string()),
        };
        token.claims(&verifier, check_nonce).map(|_| ())
    }

    /// Fetches the JWKS again unless that was done moments ago. Returns
    /// whether a fetch happened.
    async fn refetch_jwks(&self, provider: &Provider) -> Result<bool, OidcError> {
        {
            let mut last = provider.last_refetch.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(&provider.jwks_uri, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(format!("JWKS: {}", describe_discovery(&e))))?;
        tracing::info!(keys = jwks.keys().len(), "fetched the provider's JWKS again after an unknown key ID");
        provider.jwks.store(Arc::new(jwks));
        Ok(true)
    }

    /// Checks openidconnect leaves to the relying party: `azp` and `nbf`.
    fn check_extra_claims(&self, claims: &Claims) -> Result<(), OidcError> {
        if let Some(azp) = claims.get("azp") {
            if azp.as_str() != Some(self.client_id.as_str()) {
                return Err(OidcError::Invalid("the ID token's azp is not this client".into()));
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or_else(|| OidcError::Invalid("the ID token's nbf is not a number".into()))?;
            if nbf > (unix_now() + self.leeway.as_secs()) as f64 {
                return Err(OidcError::Invalid("the ID token is not valid yet (nbf)".into()));
            }
        }
        Ok(())
    }

    async fn userinfo(
        &self,
        provider: &Provider,
        access_token: &AccessToken,
        id_claims: &Claims,
    ) -> Result<Option<Claims>, OidcError> {
        let Some(url) = provider.client.user_info_url() else {
            return Ok(None);
        };
        let response = self
            .http
            .0
            .get(url.url().clone())
            .bearer_auth(access_token.secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(format!("userinfo: {}", describe_reqwest(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OidcError::Refused(format!("userinfo answered {status}")));
        }
        let body = read_limited(response).await.map_err(|e| OidcError::Unreachable(format!("userinfo: {e}")))?;
        let claims: Claims = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Invalid("userinfo is not a JSON object".into()))?;
        if claims.get("sub") != id_claims.get("sub") {
            return Err(OidcError::Invalid("userinfo's sub differs from the ID token's".into()));
        }
        Ok(Some(claims))
    }

    /// Where to send the browser to end the provider's session too, when it
    /// advertises an `end_session_endpoint` (OpenID RP-Initiated Logout).
    /// The provider sends the browser on to `post_logout` with `state`.
    pub fn logout_url(&self, id_token: Option<&str>, post_logout: &Url, state: &str) -> Option<Url> {
        let provider = self.provider().ok()?;
        let mut url = provider.end_session.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = id_token {
                q.append_pair("id_token_hint", t);
            }
            q.append_pair("client_id", &self.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout.as_str());
            q.append_pair("state", state);
        }
        Some(url)
    }
}

