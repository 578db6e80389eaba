//! `[oidc]`: the identity provider and how portcullis authenticates to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, HumanDuration, Secret, parse_http_url, read_secret};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How portcullis authenticates at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `private_key_jwt`: the PEM private key (a secret) and its certificate.
    #[serde(default)]
    pub client_key: Option<Secret>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub client_certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub insecure_http: bool,
    /// Seconds of clock skew tolerated on `exp`, `iat` and `nbf`.
    #[serde(default)]
    pub leeway: Option<HumanDuration>,
    /// The post-logout redirect URI registered at the provider; by default
    /// `{public_url}/oauth2/signed-out`.
    #[serde(default)]
    pub post_logout_redirect_uri: Option<String>,
}

/// How portcullis authenticates itself at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic` (or `client_secret_post` when the provider
    /// supports only that), with `oidc.client_secret`.
    #[default]
    ClientSecret,
    /// RFC 7523 client assertions signed with `oidc.client_key`, naming
    /// `oidc.client_certificate` (see [`crate::assertion`]).
    PrivateKeyJwt,
}

#[derive(Debug, Clone, Serialize)]
pub struct OidcConfig {
    /// The issuer exactly as written: `iss` must match it to the letter.
    pub issuer: String,
    pub client_id: String,
    /// Empty with `private_key_jwt`.
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    /// Set with `client_auth = "private_key_jwt"`: checked at start (shown
    /// by its certificate's thumbprint and expiry, never the key).
    #[serde(rename = "client_certificate", serialize_with = "show_key")]
    pub client_key: Option<std::sync::Arc<crate::assertion::ClientKey>>,
    pub scopes: Vec<String>,
    pub insecure_http: bool,
    #[serde(serialize_with = "crate::settings::show::duration")]
    pub leeway: Duration,
    /// `oidc.post_logout_redirect_uri` when set.
    #[serde(serialize_with = "crate::settings::show::text_opt")]
    pub post_logout_redirect_uri: Option<url::Url>,
}

fn show_key<S: serde::Serializer>(key: &Option<std::sync::Arc<crate::assertion::ClientKey>>, s: S) -> Result<S::Ok, S::Error> {
    key.as_deref().serialize(s)
}

/// The client secret, or with `private_key_jwt` the key and certificate,
/// read and checked (they must belong together).
fn client_credentials(
    raw: &RawOidc,
) -> Result<(Secret, Option<std::sync::Arc<crate::assertion::ClientKey>>), ConfigError> {
    let secret = read_secret("oidc.client_secret", raw.client_secret.clone(), raw.client_secret_file.as_deref())?
        .filter(|s| !s.is_empty());
    // The key's and certificate's names as the user wrote them.
    let key_name = if raw.client_key_file.is_some() { "oidc.client_key_file" } else { "oidc.client_key" };
    let cert_name =
        if raw.client_certificate_file.is_some() { "oidc.client_certificate_file" } else { "oidc.client_certificate" };
    let key = read_secret("oidc.client_key", raw.client_key.clone(), raw.client_key_file.as_deref())?
        .filter(|s| !s.is_empty());
    let certificate = read_secret(
        "oidc.client_certificate",
        raw.client_certificate.clone().map(Secret::new),
        raw.client_certificate_file.as_deref(),
    )?
    .filter(|s| !s.is_empty());
    match raw.client_auth {
        ClientAuth::ClientSecret => {
            if key.is_some() || certificate.is_some() {
                let name = if key.is_some() { key_name } else { cert_name };
                return Err(ConfigError::invalid(name, "is used only with oidc.client_auth = \"private_key_jwt\"; set that too"));
            }
            let secret = secret.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_secret",
                    "is required (or oidc.client_secret_file, or a certificate with oidc.client_auth = \"private_key_jwt\")",
                )
            })?;
            Ok((secret, None))
        }
        ClientAuth::PrivateKeyJwt => {
            if secret.is_some() {
                return Err(ConfigError::invalid(
                    "oidc.client_secret",
                    "is not used with oidc.client_auth = \"private_key_jwt\" (the certificate authenticates portcullis); remove it",
                ));
            }
            let key = key.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_key",
                    "is required with oidc.client_auth = \"private_key_jwt\" (or oidc.client_key_file): the PEM private key of the certificate registered for the client",
                )
            })?;
            let certificate = certificate.ok_or_else(|| {
                ConfigError::invalid(
                    "oidc.client_certificate",
                    "is required with oidc.client_auth = \"private_key_jwt\" (or oidc.client_certificate_file): the PEM certificate registered for the client",
                )
            })?;
            let client_key = crate::assertion::ClientKey::from_pem(key.expose(), certificate.expose()).map_err(|e| match e {
                crate::assertion::KeyError::Key(reason) => ConfigError::invalid(key_name, reason),
                crate::assertion::KeyError::Certificate(reason) => ConfigError::invalid(cert_name, reason),
            })?;
            Ok((Secret::default(), Some(std::sync::Arc::new(client_key))))
        }
    }
}

/// Checks `[oidc]`; errors name the key.
pub fn validate(raw: RawOidc) -> Result<OidcConfig, ConfigError> {
    if raw.issuer.is_empty() {
        return Err(ConfigError::invalid("oidc.issuer", "is required: the identity provider's issuer URL"));
    }
    let issuer = parse_http_url("oidc.issuer", &raw.issuer)?;
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(ConfigError::invalid("oidc.issuer", "must not have a query or fragment"));
    }
    if issuer.scheme() == "http" && !raw.insecure_http {
        return Err(ConfigError::invalid(
            "oidc.issuer",
            format!("`{}` is plain http; use https, or set oidc.insecure_http = true for a test provider", raw.issuer),
        ));
    }
    if raw.client_id.trim().is_empty() {
        return Err(ConfigError::invalid("oidc.client_id", "is required"));
    }
    let (client_secret, client_key) = client_credentials(&raw)?;
    let scopes = raw.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::invalid("oidc.scopes", "must include `openid`"));
    }
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control())) {
        return Err(ConfigError::invalid("oidc.scopes", format!("`{bad}` is not a scope")));
    }
    let leeway = raw.leeway.map(|d| d.0).unwrap_or(Duration::from_secs(60));
    if leeway > Duration::from_secs(600) {
        return Err(ConfigError::invalid("oidc.leeway", "must be at most 10m"));
    }
    let post_logout_redirect_uri = match raw.post_logout_redirect_uri.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(uri) => {
            let url = parse_http_url("oidc.post_logout_redirect_uri", uri)?;
            if url.fragment().is_some() {
                return Err(ConfigError::invalid("oidc.post_logout_redirect_uri", "must not have a fragment"));
            }
            Some(url)
        }
        None => None,
    };
    Ok(OidcConfig {
        post_logout_redirect_uri,
        issuer: raw.issuer.trim().to_string(),
        client_id: raw.client_id.trim().to_string(),
        client_secret,
        client_auth: raw.client_auth,
        client_key,
        scopes,
        insecure_http: raw.insecure_http,
        leeway,
    })
}

