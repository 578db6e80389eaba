//! Why a lookup failed, and what an administrator should do about it.

use std::time::Duration;

use super::Mode;


/// Why a lookup failed. The `Display` text is the log line: it names the
/// failure and what to do about it, and never contains a token or secret.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GraphError {
    /// `delegated` and `obo` need the access token from the login.
    #[error("graph: no access token from the login to call Microsoft Graph with (mode {})", mode.as_str())]
    NoAccessToken { mode: Mode },
    /// A claim needed for the lookup is missing.
    #[error("graph: the login has no `{claim}` claim, needed to {purpose}")]
    MissingClaim { claim: &'static str, purpose: &'static str },
    /// 401 from Graph: the token is expired or invalid.
    #[error("graph: 401 {code} while {during}: {hint}")]
    Unauthorized { during: &'static str, code: String, hint: String },
    /// 403 from Graph, usually `Authorization_RequestDenied`: a permission
    /// (or its admin consent) is missing.
    #[error("graph: 403 {code}: {hint} (while {during})")]
    Forbidden { during: &'static str, code: String, hint: String },
    /// The token endpoint refused a client credentials or On-Behalf-Of request.
    #[error("graph: the token endpoint refused the {grant} request: {error}{}: {hint}", aadsts(codes))]
    TokenEndpoint { grant: &'static str, status: u16, error: String, codes: Vec<u64>, hint: String },
    /// `client_credentials`: the login's `tid` is not the configured
    /// directory (or is missing), so its `oid` means nothing there. Graph is
    /// not asked and the token's groups are not used.
    #[error(
        "graph: the login's tenant ({}) is not the configured directory {expected}; Microsoft Graph is not asked \
         and the login gets no groups",
        tid.as_deref().map(|t| format!("tid {t}")).unwrap_or_else(|| "no `tid` claim".into())
    )]
    ForeignTenant { tid: Option<String>, expected: String },
    /// The lookup did not finish within `graph.timeout`.
    #[error("graph: timeout ({}) while {during}", humantime::format_duration(*timeout))]
    Timeout { timeout: Duration, during: String },
    /// Graph or the token endpoint could not be reached.
    #[error("graph: could not reach {host} while {during}: {reason}")]
    Unreachable { host: String, during: &'static str, reason: String },
    /// Any other unsuccessful answer.
    #[error("graph: HTTP {status} {code} while {during}{detail}")]
    Status { status: u16, code: String, during: &'static str, detail: String },
    /// An answer that could not be used.
    #[error("graph: unusable answer while {during}: {reason}")]
    Invalid { during: &'static str, reason: String },
}

fn aadsts(codes: &[u64]) -> String {
    codes.iter().map(|c| format!(" AADSTS{c}")).collect()
}

impl GraphError {
    /// The lookup ran out of time (including a `Retry-After` beyond it).
    pub fn is_timeout(&self) -> bool {
        matches!(self, GraphError::Timeout { .. })
    }
}

/// What a 403 means for each mode.
pub(super) fn forbidden_hint(mode: Mode) -> String {
    match mode {
        Mode::ClientCredentials => {
            "the app needs the Microsoft Graph permission GroupMember.Read.All (application) with admin consent".into()
        }
        Mode::Delegated => "the app needs the Microsoft Graph permission GroupMember.Read.All (delegated; or \
                            Directory.Read.All) with admin consent, requested at login in oidc.scopes"
            .into(),
        Mode::Obo => "the app needs the Microsoft Graph permission GroupMember.Read.All (delegated) with admin \
                      consent; On-Behalf-Of cannot ask the user to consent"
            .into(),
    }
}

/// What a 401 means for each mode.
pub(super) fn unauthorized_hint(mode: Mode) -> String {
    match mode {
        Mode::Delegated => "the login's access token is expired or not a Microsoft Graph token (request User.Read \
                            and GroupMember.Read.All in oidc.scopes, and no other API's scope)"
            .into(),
        Mode::ClientCredentials => {
            "the app token is expired or invalid; a new one is requested on the next lookup".into()
        }
        Mode::Obo => "the On-Behalf-Of token is expired or invalid".into(),
    }
}

/// What a token endpoint error means, by its AADSTS code.
pub(super) fn token_hint(mode: Mode, codes: &[u64], description: &str) -> String {
    let known = codes.iter().find_map(|code| {
        Some(match code {
            7000215 => {
                "invalid client secret: use the secret's Value, not its Secret ID (graph.client_secret or \
                        oidc.client_secret)"
            }
            7000222 => "the client secret has expired: create a new one in the app registration",
            700027 => {
                "the client assertion was refused: upload the certificate (oidc.client_certificate) to the app \
                 registration under Certificates & secrets → Certificates, and check it has not expired"
            }
            700024 => "the client assertion is not within its valid time range: check this host's clock",
            700016 => "no application with this client ID in the tenant: check graph.client_id and graph.tenant",
            90002 | 900023 => "the tenant was not found: check graph.tenant",
            65001 => "consent is missing: an administrator must grant admin consent for the Graph permissions",
            50013 if mode == Mode::Obo => {
                "the user's access token cannot be exchanged: it must be issued for this app (expose an API on the \
                 app registration and request its scope in oidc.scopes), not for Microsoft Graph"
            }
            70011 => "the scope was refused: check graph.graph_url",
            _ => return None,
        })
    });
    match known {
        Some(hint) => hint.to_string(),
        None => {
            let first = description.lines().next().unwrap_or("").trim();
            if first.is_empty() { "no description given".into() } else { shorten(first) }
        }
    }
}

pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 240;
    if s.chars().count() <= MAX { s.to_string() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::token::scrub;

    #[test]
    fn token_errors_are_explained_without_secrets() {
        let hint = token_hint(Mode::ClientCredentials, &[7000215], "AADSTS7000215: Invalid client secret provided.");
        assert!(hint.contains("Value, not its Secret ID"), "{hint}");
        let hint = token_hint(Mode::Obo, &[50013], "AADSTS50013: Assertion failed signature validation.");
        assert!(hint.contains("issued for this app"), "{hint}");
        let hint = token_hint(Mode::Delegated, &[1], "AADSTS1: Something.\r\nTrace ID: abc");
        assert_eq!(hint, "AADSTS1: Something.");
        assert_eq!(scrub("the secret s3cret-value leaked", &["s3cret-value"]), "the secret [redacted] leaked");
        let e = GraphError::TokenEndpoint {
            grant: "client_credentials",
            status: 401,
            error: "invalid_client".into(),
            codes: vec![7000215],
            hint: "h".into(),
        };
        assert_eq!(
            e.to_string(),
            "graph: the token endpoint refused the client_credentials request: invalid_client AADSTS7000215: h"
        );
    }
}
