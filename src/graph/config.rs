//! The `[graph]` table: its keys, their validation and defaults taken
//! from `[oidc]`, and reading the tenant from an Entra issuer.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::oidc::config::OidcConfig;
use crate::settings::{ConfigError, HumanDuration, Secret};

use super::groups::is_guid;

/// Tenants that are not a directory: fine in an issuer, useless for an app token.
const NOT_A_TENANT: [&str; 3] = ["common", "organizations", "consumers"];


/// Which token portcullis calls Microsoft Graph with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The user's access token from the login (a Graph token: `User.Read`
    /// and `GroupMember.Read.All` requested in `oidc.scopes`);
    /// `GET /me/transitiveMemberOf`.
    #[default]
    Delegated,
    /// An app-only token from the client credentials grant;
    /// `GET /users/{oid}/transitiveMemberOf`.
    ClientCredentials,
    /// The user's access token (issued for this app) exchanged On-Behalf-Of
    /// the user for a Graph token; `GET /me/transitiveMemberOf`.
    Obo,
}

impl Mode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Delegated => "delegated",
            Mode::ClientCredentials => "client_credentials",
            Mode::Obo => "obo",
        }
    }
}

/// When memberships are read from Graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Only when the token carries an overage marker.
    #[default]
    Overage,
    /// On every login, for tenants whose tokens carry no groups claim.
    Always,
}

/// What the groups header carries for a group whose name is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupsHeader {
    /// The display name, or the ID when no name is known.
    #[default]
    Names,
    /// The object ID (GUID) only.
    Ids,
    /// The ID and, when known, the name.
    Both,
}

/// The `[graph]` table.
///
/// After [`GraphConfig::validate`] (run by [`crate::Config::validate`]) the
/// optional keys hold their effective values: `tenant` taken from the
/// issuer, `client_id` and `client_secret` from `[oidc]`, and a
/// `client_secret_file` read into `client_secret`. `client_secret` stays
/// `None` when Graph uses `[oidc]`'s certificate (`private_key_jwt`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    pub enabled: bool,
    pub mode: Mode,
    pub trigger: Trigger,
    /// Directory (tenant) ID or a verified domain; default: from
    /// `oidc.issuer` (`https://login.microsoftonline.com/{tenant}/v2.0`).
    pub tenant: Option<String>,
    /// Default: `oidc.client_id`.
    pub client_id: Option<String>,
    /// Default: `oidc.client_secret`, or with `oidc.client_auth =
    /// "private_key_jwt"` `[oidc]`'s key and certificate.
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    /// For the whole lookup, retries and paging included.
    pub timeout: HumanDuration,
    pub authority: String,
    pub graph_url: String,
    /// How long memberships and group names are reused; `0s` turns caching off.
    pub cache_ttl: HumanDuration,
    pub resolve_names: bool,
    pub security_groups_only: bool,
    pub groups_header: GroupsHeader,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            enabled: false,
            mode: Mode::Delegated,
            trigger: Trigger::Overage,
            tenant: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            timeout: HumanDuration(Duration::from_secs(5)),
            authority: "https://login.microsoftonline.com".into(),
            graph_url: "https://graph.microsoft.com".into(),
            cache_ttl: HumanDuration(Duration::from_secs(600)),
            resolve_names: true,
            security_groups_only: false,
            groups_header: GroupsHeader::Names,
        }
    }
}

impl GraphConfig {
    /// Checks the table and fills in the defaults taken from `[oidc]`.
    pub fn validate(mut self, oidc: &OidcConfig) -> Result<GraphConfig, ConfigError> {
        let timeout = self.timeout.0;
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            return Err(ConfigError::invalid("graph.timeout", "must be between 100ms and 60s"));
        }
        if self.cache_ttl.0 > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::invalid("graph.cache_ttl", "must be at most 24h"));
        }
        self.authority =
            base_url("graph.authority", &self.authority, oidc.insecure_http)?.as_str().trim_end_matches('/').into();
        self.graph_url =
            base_url("graph.graph_url", &self.graph_url, oidc.insecure_http)?.as_str().trim_end_matches('/').into();

        // Only the app modes call the token endpoint, which needs a directory.
        let needs_tenant = self.enabled && self.mode != Mode::Delegated;
        self.tenant = match self.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => Some(t.to_string()),
            None => tenant_from_issuer(&oidc.issuer),
        };
        match &self.tenant {
            Some(t) if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') => {
                return Err(ConfigError::invalid(
                    "graph.tenant",
                    format!("`{t}` is not a directory (tenant) ID or domain name"),
                ));
            }
            Some(t) if needs_tenant && NOT_A_TENANT.contains(&t.to_ascii_lowercase().as_str()) => {
                return Err(ConfigError::invalid(
                    "graph.tenant",
                    format!("`{t}` is not a directory; mode `{}` needs your directory (tenant) ID", self.mode.as_str()),
                ));
            }
            None if needs_tenant => {
                return Err(ConfigError::invalid(
                    "graph.tenant",
                    format!(
                        "could not be taken from oidc.issuer `{}` (expected https://login.microsoftonline.com/{{tenant}}/v2.0); \
                         set it to your directory (tenant) ID",
                        oidc.issuer
                    ),
                ));
            }
            _ => {}
        }

        if self.enabled && self.mode == Mode::ClientCredentials && directory_id(self.tenant.as_deref(), &oidc.issuer).is_none() {
            return Err(ConfigError::invalid(
                "graph.tenant",
                format!(
                    "`{}` is a domain name; mode `client_credentials` checks each login's `tid` against the directory \
                     (tenant) ID, so set graph.tenant (or the tenant in oidc.issuer) to that ID",
                    self.tenant.as_deref().unwrap_or_default()
                ),
            ));
        }

        self.client_id = Some(
            self.client_id.as_deref().map(str::trim).filter(|c| !c.is_empty()).unwrap_or(&oidc.client_id).to_string(),
        );
        let secret = crate::settings::read_secret(
            "graph.client_secret",
            self.client_secret.take(),
            self.client_secret_file.as_deref(),
        )?;
        self.client_secret_file = None;
        self.client_secret = match secret.filter(|s| !s.is_empty()) {
            Some(own) => Some(own),
            None if oidc.client_key.is_some() => None,
            None => Some(oidc.client_secret.clone()),
        };
        Ok(self)
    }
}

/// Parses an `https` base URL without query, fragment or credentials.
pub(super) fn base_url(key: &str, value: &str, insecure_http: bool) -> Result<Url, ConfigError> {
    let url =
        Url::parse(value.trim()).map_err(|e| ConfigError::invalid(key, format!("`{value}` is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if insecure_http => {}
        "http" => {
            return Err(ConfigError::invalid(
                key,
                format!("`{value}` is plain http; use https, or set oidc.insecure_http = true for a test setup"),
            ));
        }
        _ => return Err(ConfigError::invalid(key, format!("`{value}` must be an https URL"))),
    }
    if url.host_str().is_none() {
        return Err(ConfigError::invalid(key, format!("`{value}` has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(key, "must be a plain base URL, without user name, query or fragment"));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// The tenant in an Entra issuer: `https://login.microsoftonline.com/{tenant}/v2.0`
/// or the v1 form `https://sts.windows.net/{tenant}/`.
pub fn tenant_from_issuer(issuer: &str) -> Option<String> {
    let url = Url::parse(issuer).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [tenant, "v2.0"] | [tenant] if *tenant != "v2.0" => Some(tenant.to_string()),
        _ => None,
    }
}

/// The directory (tenant) ID logins must come from: `graph.tenant` when it
/// is an ID, else the tenant in `oidc.issuer` when that is one (lower case).
pub(super) fn directory_id(tenant: Option<&str>, issuer: &str) -> Option<String> {
    tenant.filter(|t| is_guid(t)).map(str::to_string).or_else(|| tenant_from_issuer(issuer).filter(|t| is_guid(t))).map(|t| t.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::graph::Graph;

    const ENTRA: &str = "https://login.microsoftonline.com/0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11/v2.0";

    fn toml(issuer: &str, graph: &str) -> String {
        format!(
            "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"app-id\"\n\
             client_secret = \"oidc-secret-1\"\n[graph]\nenabled = true\n{graph}\n"
        )
    }

    #[test]
    fn tenant_is_taken_from_entra_issuers() {
        assert_eq!(tenant_from_issuer(ENTRA).as_deref(), Some("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"));
        assert_eq!(
            tenant_from_issuer("https://sts.windows.net/contoso.onmicrosoft.com/").as_deref(),
            Some("contoso.onmicrosoft.com")
        );
        assert_eq!(tenant_from_issuer("https://id.example.com"), None);
        assert_eq!(tenant_from_issuer("https://id.example.com/realms/main/protocol/openid-connect"), None);
    }

    #[test]
    fn defaults_and_effective_values() {
        let c = Config::from_toml_str(&toml(ENTRA, "")).unwrap();
        let g = &c.graph;
        assert!(g.enabled);
        assert_eq!(g.mode, Mode::Delegated);
        assert_eq!(g.trigger, Trigger::Overage);
        assert_eq!(g.timeout.0, Duration::from_secs(5));
        assert_eq!(g.cache_ttl.0, Duration::from_secs(600));
        assert!(g.resolve_names && !g.security_groups_only);
        assert_eq!(g.groups_header, GroupsHeader::Names);
        assert_eq!(g.tenant.as_deref(), Some("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"));
        assert_eq!(g.client_id.as_deref(), Some("app-id"));
        assert_eq!(g.client_secret.as_ref().unwrap().expose(), "oidc-secret-1");

        let graph = Graph::new(&c.graph, &c.oidc).unwrap();
        assert_eq!(graph.scope, "https://graph.microsoft.com/.default");
        assert_eq!(
            graph.token_url.as_ref().unwrap().as_str(),
            "https://login.microsoftonline.com/0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11/oauth2/v2.0/token"
        );
        assert_eq!(graph.graph_path(&["v1.0", "$batch"]).as_str(), "https://graph.microsoft.com/v1.0/$batch");

        // Without the table, the feature is off and nothing is required.
        let c = Config::from_toml_str(&toml("https://id.example.com", "").replace("enabled = true", "")).unwrap();
        assert!(!c.graph.enabled);
    }

    #[test]
    fn app_modes_need_a_real_tenant() {
        let common = "https://login.microsoftonline.com/common/v2.0";
        let err = Config::from_toml_str(&toml(common, "mode = \"client_credentials\"")).unwrap_err().to_string();
        assert!(err.contains("graph.tenant") && err.contains("common"), "{err}");
        let err = Config::from_toml_str(&toml("https://id.example.com", "mode = \"obo\"")).unwrap_err().to_string();
        assert!(err.contains("graph.tenant") && err.contains("tenant) ID"), "{err}");
        // Delegated calls /me and needs no tenant.
        Config::from_toml_str(&toml(common, "mode = \"delegated\"")).unwrap();
        let c = Config::from_toml_str(&toml(common, "mode = \"obo\"\ntenant = \"contoso.onmicrosoft.com\"")).unwrap();
        assert_eq!(c.graph.tenant.as_deref(), Some("contoso.onmicrosoft.com"));

        // client_credentials compares each login's `tid` with the directory
        // ID: a domain name alone is not enough...
        let domain = "mode = \"client_credentials\"\ntenant = \"contoso.onmicrosoft.com\"";
        let err = Config::from_toml_str(&toml(common, domain)).unwrap_err().to_string();
        assert!(err.contains("graph.tenant") && err.contains("`tid`"), "{err}");
        // ...unless the issuer names the directory ID.
        Config::from_toml_str(&toml(ENTRA, domain)).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        for (graph, key) in [
            ("mode = \"app\"", "mode"),
            ("trigger = \"sometimes\"", "trigger"),
            ("timeout = \"soon\"", "timeout"),
            ("timeout = \"10m\"", "graph.timeout"),
            ("authority = \"http://login.example.com\"", "graph.authority"),
            ("graph_url = \"https://graph.example.com/?x=1\"", "graph.graph_url"),
            ("groups_header = \"guids\"", "groups_header"),
            ("tenant = \"a/b\"", "graph.tenant"),
            ("scopes = [\"x\"]", "scopes"),
        ] {
            let err = Config::from_toml_str(&toml(ENTRA, graph)).unwrap_err().to_string();
            assert!(err.contains(key), "{graph}: {err}");
        }
    }

    #[test]
    fn own_secret_file_is_read_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph-secret");
        std::fs::write(&path, "graph-secret-2\n").unwrap();
        let c = Config::from_toml_str(&toml(ENTRA, &format!("client_secret_file = {path:?}"))).unwrap();
        assert_eq!(c.graph.client_secret.as_ref().unwrap().expose(), "graph-secret-2");
        let shown = c.redacted().to_string();
        assert!(shown.contains("\"graph\""), "{shown}");
        assert!(!shown.contains("graph-secret-2") && !shown.contains("oidc-secret-1"), "{shown}");
        assert!(!format!("{c:?}").contains("graph-secret-2"));

        let both = format!("client_secret = \"x\"\nclient_secret_file = {path:?}");
        let err = Config::from_toml_str(&toml(ENTRA, &both)).unwrap_err().to_string();
        assert!(err.contains("graph.client_secret"), "{err}");
    }

}
