//! Tokens for Graph in each mode: the user's own (`delegated`), the app's
//! from the client credentials grant (one, cached), or the user's exchanged
//! On-Behalf-Of (cached per user); the app authenticates with its secret
//! or a client assertion ([`crate::assertion`]).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::settings::Secret;

use super::error::{shorten, token_hint};
use super::http::read_json;
use super::{Claims, Graph, GraphError, Mode, Stage};

/// An app token is replaced this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A bearer token: never printed.
#[derive(Clone)]
pub(super) struct Token(pub(super) String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A token for Graph and when to replace it.
#[derive(Clone)]
pub(super) struct AppToken {
    pub(super) token: Token,
    refresh_at: Instant,
}

impl AppToken {
    /// Reused until shortly before it expires: five minutes, or half its
    /// lifetime when that is shorter.
    pub(super) fn new(token: Token, lifetime: Duration) -> AppToken {
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        AppToken { token, refresh_at: Instant::now() + lifetime - margin }
    }

    pub(super) fn fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// On-Behalf-Of tokens leave the cache when they are due for replacement.
pub(super) struct UntilRefresh;

impl moka::Expiry<String, AppToken> for UntilRefresh {
    fn expire_after_create(&self, _: &String, token: &AppToken, now: Instant) -> Option<Duration> {
        Some(token.refresh_at.saturating_duration_since(now))
    }

    fn expire_after_update(&self, _: &String, token: &AppToken, now: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(token.refresh_at.saturating_duration_since(now))
    }
}

/// Most users whose On-Behalf-Of token is kept at once.
pub(super) const OBO_CACHE_USERS: u64 = 10_000;

/// How the app authenticates at the token endpoint.
pub(super) enum Credential {
    Secret(Secret),
    /// `private_key_jwt`: a fresh client assertion for each request.
    Key(std::sync::Arc<crate::assertion::ClientKey>),
}

/// Form fields that are credentials: never echoed in an error.
const CREDENTIAL_FIELDS: [&str; 3] = ["client_secret", "client_assertion", "assertion"];

impl Graph {
    /// The token for Graph calls in this lookup, fetched at most once.
    pub(super) async fn bearer(
        &self,
        memo: &mut Option<Token>,
        claims: &Claims,
        access_token: Option<&str>,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<Token, GraphError> {
        if let Some(t) = memo {
            return Ok(t.clone());
        }
        let user_token = || {
            access_token
                .filter(|t| !t.is_empty())
                .map(|t| Token(t.to_string()))
                .ok_or(GraphError::NoAccessToken { mode: self.mode })
        };
        let token = match self.mode {
            Mode::Delegated => user_token()?,
            Mode::ClientCredentials => self.app_token(deadline, stage).await?,
            Mode::Obo => {
                let key = self.user_key(claims)?;
                let cached = self.obo_tokens.get(&key).filter(AppToken::fresh);
                crate::metrics::get().cache("graph_obo_tokens", cached.is_some());
                if let Some(hit) = cached {
                    *memo = Some(hit.token.clone());
                    return Ok(hit.token);
                }
                let assertion = user_token()?;
                stage.set("exchanging the user's token On-Behalf-Of at the token endpoint");
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.0.as_str()),
                    ("scope", self.scope.as_str()),
                    ("requested_token_use", "on_behalf_of"),
                ];
                let (token, lifetime) = self.token_request("On-Behalf-Of", &form, deadline).await?;
                self.obo_tokens.insert(key, AppToken::new(token.clone(), lifetime));
                token
            }
        };
        *memo = Some(token.clone());
        Ok(token)
    }

    /// An app-only token, reused until shortly before it expires.
    async fn app_token(&self, deadline: Instant, stage: &Stage) -> Result<Token, GraphError> {
        let mut cached = self.app_token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| t.fresh()) {
            return Ok(t.token.clone());
        }
        stage.set("requesting an app token from the token endpoint");
        let form = [("grant_type", "client_credentials"), ("scope", self.scope.as_str())];
        let (token, lifetime) = self.token_request("client_credentials", &form, deadline).await?;
        *cached = Some(AppToken::new(token.clone(), lifetime));
        Ok(token)
    }

    pub(super) async fn forget_app_token(&self) {
        if self.mode == Mode::ClientCredentials {
            *self.app_token.lock().await = None;
        }
    }

    /// POSTs `grant` to `{authority}/{tenant}/oauth2/v2.0/token`, with the
    /// client's credentials: its secret, or a client assertion.
    async fn token_request(
        &self,
        grant: &'static str,
        grant_form: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<(Token, Duration), GraphError> {
        const DURING: &str = "requesting a token";
        let Some(url) = self.token_url.clone() else {
            return Err(GraphError::Invalid { during: DURING, reason: "graph.tenant is not set".into() });
        };
        let mut form: Vec<(&str, String)> = grant_form.iter().map(|(k, v)| (*k, v.to_string())).collect();
        match &self.credential {
            Credential::Secret(secret) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret.expose().to_string()));
            }
            Credential::Key(key) => form.extend(key.form(&self.client_id, url.as_str())),
        }
        let form = &form;
        let response = self.send(DURING, deadline, || self.http.post(url.clone()).form(form)).await?;
        let status = response.status();
        let body = read_json(response, DURING).await;
        if status.is_success() {
            let body = body?;
            let token = body.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
            let Some(token) = token else {
                return Err(GraphError::Invalid { during: DURING, reason: "the answer has no access_token".into() });
            };
            let expires_in = match body.get("expires_in") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .unwrap_or(3600);
            return Ok((Token(token.to_string()), Duration::from_secs(expires_in.max(1))));
        }
        let body = body.unwrap_or(Value::Null);
        let error = body.get("error").and_then(Value::as_str).unwrap_or("unknown_error").to_string();
        let codes: Vec<u64> = body
            .get("error_codes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let description = body.get("error_description").and_then(Value::as_str).unwrap_or("");
        let secrets: Vec<&str> =
            form.iter().filter(|(k, _)| CREDENTIAL_FIELDS.contains(k)).map(|(_, v)| v.as_str()).collect();
        let hint = scrub(&token_hint(self.mode, &codes, description), &secrets);
        Err(GraphError::TokenEndpoint { grant, status: status.as_u16(), error: shorten(&error), codes, hint })
    }
}

/// Replaces any secret that an error text might echo.
pub(super) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "[redacted]");
    }
    out
}
