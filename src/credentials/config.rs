//! `[api]`: the credentials apps and devices may bring instead of a
//! browser's session cookie.

use serde::{Deserialize, Deserializer, Serialize};

use crate::settings::ConfigError;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    pub bearer_tokens: Option<bool>,
    #[serde(default, deserialize_with = "one_or_more")]
    pub audiences: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_more")]
    pub required_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub personal_tokens: Option<bool>,
    #[serde(default)]
    pub token_header: Option<String>,
    #[serde(default)]
    pub forward_credentials: Option<bool>,
    #[serde(default)]
    pub max_failures_per_minute: Option<u32>,
}

/// A list, or one value alone (as the environment gives it:
/// `PORTCULLIS_API__AUDIENCES=portcullis`).
fn one_or_more<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(Option::<OneOrMore>::deserialize(d)?.map(|v| match v {
        OneOrMore::One(s) => vec![s],
        OneOrMore::More(v) => v,
    }))
}

/// The validated `[api]` section.
#[derive(Debug, Clone, Serialize)]
pub struct ApiConfig {
    /// Accept the provider's JWT access tokens as `Authorization: Bearer`.
    pub bearer_tokens: bool,
    /// A provider token must name one of these in `aud`.
    pub audiences: Vec<String>,
    /// ... and carry every one of these scopes (`scope` or `scp`).
    pub required_scopes: Vec<String>,
    /// Personal access tokens: the `/oauth2/tokens` page, and the tokens it makes.
    pub personal_tokens: bool,
    /// A header of its own that carries a personal token (lower case), for
    /// apps that can add a header but not `Authorization`.
    pub token_header: Option<String>,
    /// Leave the credential on the request to the app.
    pub forward_credentials: bool,
    /// Refused credentials per client address and minute before it gets
    /// 429; 0: no limit.
    pub max_failures_per_minute: u32,
}

/// Refused credentials per client address and minute, unless configured.
pub const DEFAULT_MAX_FAILURES: u32 = 10;

/// Headers a token header must not be: they mean something else to
/// portcullis, the proxy or the app.
const RESERVED: [&str; 8] =
    ["authorization", "proxy-authorization", "cookie", "host", "x-forwarded-for", "x-real-ip", "x-original-url", "x-portcullis-credential"];

pub fn validate(raw: RawApi) -> Result<ApiConfig, ConfigError> {
    let trimmed = |list: Option<Vec<String>>| -> Vec<String> {
        list.unwrap_or_default().into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    let bearer_tokens = raw.bearer_tokens.unwrap_or(false);
    let audiences = trimmed(raw.audiences);
    if bearer_tokens && audiences.is_empty() {
        return Err(ConfigError::invalid(
            "api.audiences",
            "is required with api.bearer_tokens = true: the audience (`aud`) the provider puts in tokens meant for these apps; \
             portcullis accepts no token for any audience",
        ));
    }
    let required_scopes = trimmed(raw.required_scopes);
    if let Some(bad) = required_scopes.iter().find(|s| s.contains(char::is_whitespace)) {
        return Err(ConfigError::invalid("api.required_scopes", format!("`{bad}` is not one scope (no spaces)")));
    }
    let token_header = match raw.token_header.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => {
            if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::invalid("api.token_header", format!("`{h}` is not a header name")));
            }
            if RESERVED.contains(&h.as_str()) || h.starts_with("x-forwarded-") {
                return Err(ConfigError::invalid(
                    "api.token_header",
                    format!("`{h}` already means something else; pick a header of its own, e.g. X-Portcullis-Token"),
                ));
            }
            Some(h)
        }
    };
    Ok(ApiConfig {
        bearer_tokens,
        audiences,
        required_scopes,
        personal_tokens: raw.personal_tokens.unwrap_or(true),
        token_header,
        forward_credentials: raw.forward_credentials.unwrap_or(false),
        max_failures_per_minute: raw.max_failures_per_minute.unwrap_or(DEFAULT_MAX_FAILURES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml: &str) -> RawApi {
        figment::Figment::from(<figment::providers::Toml as figment::providers::Format>::string(toml)).extract().unwrap()
    }

    #[test]
    fn bearer_tokens_need_an_audience() {
        let err = validate(raw("bearer_tokens = true")).unwrap_err().to_string();
        assert!(err.contains("api.audiences"), "{err}");
        let c = validate(raw("bearer_tokens = true\naudiences = \"photos-api\"")).unwrap();
        assert_eq!(c.audiences, ["photos-api"]);
    }

    #[test]
    fn defaults_and_the_token_header() {
        let c = validate(RawApi::default()).unwrap();
        assert!(!c.bearer_tokens && c.personal_tokens && !c.forward_credentials);
        assert_eq!((c.token_header, c.max_failures_per_minute), (None, DEFAULT_MAX_FAILURES));
        let c = validate(raw("token_header = \"X-Portcullis-Token\"")).unwrap();
        assert_eq!(c.token_header.as_deref(), Some("x-portcullis-token"));
        for bad in ["Authorization", "cookie", "bad header", "X-Forwarded-User"] {
            let err = validate(raw(&format!("token_header = \"{bad}\""))).unwrap_err().to_string();
            assert!(err.contains("api.token_header"), "{bad}: {err}");
        }
    }
}
