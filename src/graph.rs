//! Microsoft Graph: group memberships and group names for Entra ID logins.
//!
//! Entra ID puts group object IDs (GUIDs) into tokens, and none at all once
//! a user is in more than 200 groups: the token then carries an overage
//! marker (`_claim_names.groups` pointing into `_claim_sources`, or
//! `hasgroups: true`) instead of the `groups` claim. This module turns such
//! a login into the user's real groups, with names:
//!
//! * [`overage`] tells, from the claims alone, whether the token's groups
//!   are incomplete.
//! * [`Graph::resolve`] reads the user's memberships from
//!   `transitiveMemberOf` (on overage, or on every login with
//!   `trigger = "always"`), unites them with the token's `groups` claim,
//!   and resolves GUIDs that arrived without a name through `$batch`.
//!   Memberships and names are cached for `cache_ttl`.
//! * Which token calls Graph depends on `[graph] mode`: the user's own
//!   access token (`delegated`), an app token from the client credentials
//!   grant (`client_credentials`, cached until shortly before it expires),
//!   or a token from the On-Behalf-Of exchange (`obo`, cached per user the
//!   same way, for at most 10,000 users).
//!
//! A failed lookup is never a grant: [`Graph::resolve`] returns a
//! [`GraphError`] that says what went wrong (and, for permission problems,
//! which permission is missing) and logs one line about it; the caller then
//! decides, usually by continuing with [`Graph::token_groups`] and refusing
//! the login when required groups are configured but
//! [`Resolved::membership_known`] is false. Neither errors nor logs ever
//! contain a token or a secret.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::{Config, ConfigError, HumanDuration, OidcConfig, Secret};

/// Where Entra ID puts group IDs in its tokens (whatever `identity.groups_claim` says).
const GROUPS_CLAIM: &str = "groups";
/// `@odata.type` of the directory objects kept from `transitiveMemberOf`.
const GROUP_TYPE: &str = "#microsoft.graph.group";
/// Most sub-requests Graph accepts in one `$batch`.
const BATCH_SIZE: usize = 20;
/// Largest page size `transitiveMemberOf` allows.
const PAGE_SIZE: u32 = 999;
/// Guard against a `@odata.nextLink` loop (999 × 200 memberships is plenty).
const MAX_PAGES: usize = 200;
/// Largest response body read from Graph or the token endpoint.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How often one request is retried after 429/503 before giving up.
const MAX_RETRIES: u32 = 5;
/// Wait after a 429 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// An app token is replaced this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Tenants that are not a directory: fine in an issuer, useless for an app token.
const NOT_A_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

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
    fn as_str(self) -> &'static str {
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
/// After [`GraphConfig::validate`] (run by [`Config::validate`]) the
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
        let secret = crate::config::read_secret(
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
fn base_url(key: &str, value: &str, insecure_http: bool) -> Result<Url, ConfigError> {
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
fn directory_id(tenant: Option<&str>, issuer: &str) -> Option<String> {
    tenant.filter(|t| is_guid(t)).map(str::to_string).or_else(|| tenant_from_issuer(issuer).filter(|t| is_guid(t))).map(|t| t.to_ascii_lowercase())
}

// ---------------------------------------------------------------------------
// Overage detection and results
// ---------------------------------------------------------------------------

/// Whether the token's groups are incomplete: Entra left the `groups` claim
/// out because of overage and put `_claim_names.groups` (with a source in
/// `_claim_sources`, whose deprecated Azure AD Graph URL is never called) or
/// `hasgroups: true` in its place.
pub fn overage(claims: &Map<String, Value>) -> bool {
    let named = claims.get("_claim_names").and_then(|n| n.get("groups")).is_some_and(|src| !src.is_null());
    let hasgroups = matches!(claims.get("hasgroups"), Some(Value::Bool(true)))
        || matches!(claims.get("hasgroups"), Some(Value::String(s)) if s.eq_ignore_ascii_case("true"));
    named || hasgroups
}

/// One group: its object ID (or, for tenants that emit names or
/// sAMAccountNames in the token, the value as sent) and its display name
/// when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: Option<String>,
}

/// The user's groups after the lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The token's groups first (in claim order), then those only Graph
    /// knew; no ID twice.
    pub groups: Vec<Group>,
    /// The token carried an overage marker.
    pub overage: bool,
    /// Memberships were read from Graph (or its cache) for this login.
    pub from_graph: bool,
}

impl Resolved {
    /// False when the token had an overage marker and Graph was not (or
    /// could not be) asked: the groups are then incomplete, and a login
    /// that requires groups must be refused.
    pub fn membership_known(&self) -> bool {
        !self.overage || self.from_graph
    }

    /// The values for the groups header, as `groups_header` asks.
    pub fn header_values(&self, how: GroupsHeader) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.groups {
            match how {
                GroupsHeader::Ids => out.push(g.id.clone()),
                GroupsHeader::Names => out.push(g.name.clone().unwrap_or_else(|| g.id.clone())),
                GroupsHeader::Both => {
                    out.push(g.id.clone());
                    out.extend(g.name.clone());
                }
            }
        }
        dedup(out)
    }

    /// Every value a rule may name a group by: IDs and names.
    pub fn match_values(&self) -> Vec<String> {
        self.header_values(GroupsHeader::Both)
    }
}

fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|v| seen.insert(v.clone())).collect()
}

/// Whether `s` looks like an Entra object ID.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The key groups are compared by: GUIDs case-insensitively, others as sent.
fn group_key(id: &str) -> String {
    if is_guid(id) { id.to_ascii_lowercase() } else { id.to_string() }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

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
fn forbidden_hint(mode: Mode) -> String {
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
fn unauthorized_hint(mode: Mode) -> String {
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
fn token_hint(mode: Mode, codes: &[u64], description: &str) -> String {
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

fn shorten(s: &str) -> String {
    const MAX: usize = 240;
    if s.chars().count() <= MAX { s.to_string() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// A bearer token: never printed.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A token for Graph and when to replace it.
#[derive(Clone)]
struct AppToken {
    token: Token,
    refresh_at: Instant,
}

impl AppToken {
    /// Reused until shortly before it expires: five minutes, or half its
    /// lifetime when that is shorter.
    fn new(token: Token, lifetime: Duration) -> AppToken {
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        AppToken { token, refresh_at: Instant::now() + lifetime - margin }
    }

    fn fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// On-Behalf-Of tokens leave the cache when they are due for replacement.
struct UntilRefresh;

impl moka::Expiry<String, AppToken> for UntilRefresh {
    fn expire_after_create(&self, _: &String, token: &AppToken, now: Instant) -> Option<Duration> {
        Some(token.refresh_at.saturating_duration_since(now))
    }

    fn expire_after_update(&self, _: &String, token: &AppToken, now: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(token.refresh_at.saturating_duration_since(now))
    }
}

/// Most users whose On-Behalf-Of token is kept at once.
const OBO_CACHE_USERS: u64 = 10_000;

/// How the app authenticates at the token endpoint.
enum Credential {
    Secret(Secret),
    /// `private_key_jwt`: a fresh client assertion for each request.
    Key(std::sync::Arc<crate::assertion::ClientKey>),
}

/// Form fields that are credentials: never echoed in an error.
const CREDENTIAL_FIELDS: [&str; 3] = ["client_secret", "client_assertion", "assertion"];

/// Microsoft Graph as portcullis sees it; cheap to share behind an `Arc`.
pub struct Graph {
    enabled: bool,
    mode: Mode,
    trigger: Trigger,
    client_id: String,
    credential: Credential,
    timeout: Duration,
    token_url: Option<Url>,
    /// `client_credentials`: the directory ID every login's `tid` must be.
    directory_id: Option<String>,
    graph_url: Url,
    scope: String,
    resolve_names: bool,
    security_groups_only: bool,
    groups_header: GroupsHeader,
    http: reqwest::Client,
    app_token: tokio::sync::Mutex<Option<AppToken>>,
    /// `obo`: user key → the user's Graph token, until shortly before it
    /// expires (bounded; not affected by `cache_ttl`).
    obo_tokens: Cache<String, AppToken>,
    /// User key → memberships (groups only, with names).
    memberships: Option<Cache<String, std::sync::Arc<Vec<Group>>>>,
    /// Lower-case group ID → display name (`None`: Graph does not know it).
    names: Option<Cache<String, Option<String>>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("enabled", &self.enabled)
            .field("mode", &self.mode)
            .field("graph_url", &self.graph_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Where in the lookup we are, for the timeout message.
struct Stage(Mutex<&'static str>);

impl Stage {
    fn set(&self, what: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Graph {
    /// Builds the client from the validated configuration.
    pub fn new(config: &Config) -> Result<Graph, ConfigError> {
        let g = &config.graph;
        let graph_url = base_url("graph.graph_url", &g.graph_url, true)?;
        let authority = base_url("graph.authority", &g.authority, true)?;
        let token_url = match &g.tenant {
            Some(tenant) => {
                let mut u = authority.clone();
                u.path_segments_mut()
                    .map_err(|_| ConfigError::invalid("graph.authority", "cannot be a base URL"))?
                    .pop_if_empty()
                    .extend([tenant.as_str(), "oauth2", "v2.0", "token"]);
                Some(u)
            }
            None => None,
        };
        let scope = format!("{}/.default", graph_url.as_str().trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(g.timeout.0)
            .connect_timeout(g.timeout.0.min(Duration::from_secs(5)))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::invalid("graph", format!("cannot build the HTTP client: {e}")))?;
        let ttl = g.cache_ttl.0;
        let (memberships, names) = if ttl.is_zero() {
            (None, None)
        } else {
            (
                Some(Cache::builder().max_capacity(10_000).time_to_live(ttl).build()),
                Some(Cache::builder().max_capacity(100_000).time_to_live(ttl).build()),
            )
        };
        Ok(Graph {
            enabled: g.enabled,
            mode: g.mode,
            trigger: g.trigger,
            client_id: g.client_id.clone().unwrap_or_else(|| config.oidc.client_id.clone()),
            credential: match (&g.client_secret, &config.oidc.client_key) {
                (Some(secret), _) if !secret.is_empty() => Credential::Secret(secret.clone()),
                (_, Some(key)) => Credential::Key(key.clone()),
                _ => Credential::Secret(config.oidc.client_secret.clone()),
            },
            timeout: g.timeout.0,
            token_url,
            directory_id: if g.mode == Mode::ClientCredentials {
                directory_id(g.tenant.as_deref(), &config.oidc.issuer)
            } else {
                None
            },
            graph_url,
            scope,
            resolve_names: g.resolve_names,
            security_groups_only: g.security_groups_only,
            groups_header: g.groups_header,
            http,
            app_token: tokio::sync::Mutex::new(None),
            obo_tokens: Cache::builder().max_capacity(OBO_CACHE_USERS).expire_after(UntilRefresh).build(),
            memberships,
            names,
        })
    }

    /// Whether `[graph] enabled = true`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The configured `groups_header`.
    pub fn groups_header(&self) -> GroupsHeader {
        self.groups_header
    }

    /// Puts the user's groups as Graph knows them into `claims` (the
    /// `groups` claim then holds IDs and names, so rules may use either),
    /// before identity mapping. The overage markers are removed when the
    /// membership is now known, or when no group is required to sign in (a
    /// failed lookup then leaves the token's groups); otherwise they stay,
    /// and the mapping refuses the login saying why. Returns the values for
    /// the groups header, or `None` when Graph is not enabled.
    pub async fn enrich(
        &self,
        claims: &mut Map<String, Value>,
        access_token: Option<&str>,
        groups_required: bool,
    ) -> Option<Vec<String>> {
        if !self.enabled {
            return None;
        }
        let resolved = match self.resolve(claims, access_token).await {
            Ok(r) => r,
            // Another directory's groups mean nothing here, and a name such
            // a token carries may be anyone's choosing: no groups at all.
            Err(GraphError::ForeignTenant { .. }) => {
                Resolved { groups: Vec::new(), overage: overage(claims), from_graph: false }
            }
            Err(_) => self.token_groups(claims),
        };
        claims.insert(GROUPS_CLAIM.into(), Value::Array(resolved.match_values().into_iter().map(Value::String).collect()));
        if resolved.membership_known() || !groups_required {
            claims.remove("_claim_names");
            claims.remove("_claim_sources");
            claims.remove("hasgroups");
        }
        Some(resolved.header_values(self.groups_header))
    }

    /// The token's own groups, with names from the cache where known; no
    /// network. The fallback when [`Graph::resolve`] fails.
    pub fn token_groups(&self, claims: &Map<String, Value>) -> Resolved {
        let mut groups = Vec::new();
        let mut seen = HashSet::new();
        for id in string_list(claims.get(GROUPS_CLAIM)) {
            if seen.insert(group_key(&id)) {
                let name = self.cached_name(&id).flatten();
                groups.push(Group { id, name });
            }
        }
        Resolved { groups, overage: overage(claims), from_graph: false }
    }

    /// Looks the user's groups up as configured: memberships from Graph on
    /// overage (or always), united with the token's groups, GUIDs resolved
    /// to names. Without `enabled`, the token's groups. Takes at most
    /// `graph.timeout`; logs one line when it fails.
    pub async fn resolve(
        &self,
        claims: &Map<String, Value>,
        access_token: Option<&str>,
    ) -> Result<Resolved, GraphError> {
        if !self.enabled {
            return Ok(self.token_groups(claims));
        }
        let stage = Stage(Mutex::new("starting the lookup"));
        let deadline = Instant::now() + self.timeout;
        let result = match tokio::time::timeout(self.timeout, self.lookup(claims, access_token, deadline, &stage)).await
        {
            Ok(result) => result,
            Err(_) => Err(GraphError::Timeout { timeout: self.timeout, during: stage.get().to_string() }),
        };
        if self.mode == Mode::Obo && matches!(result, Err(GraphError::Unauthorized { .. })) {
            // Graph refused the user's On-Behalf-Of token: exchange anew next time.
            if let Ok(key) = self.user_key(claims) {
                self.obo_tokens.invalidate(&key);
            }
        }
        let oid = claim_str(claims, "oid").unwrap_or_default();
        crate::metrics::get().graph(match &result {
            Ok(_) => "success",
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "error",
        });
        match &result {
            Ok(r) => tracing::debug!(
                oid = %oid,
                groups = r.groups.len(),
                overage = r.overage,
                from_graph = r.from_graph,
                "graph: groups resolved"
            ),
            Err(e) => tracing::warn!(oid = %oid, mode = self.mode.as_str(), "{e}"),
        }
        result
    }

    async fn lookup(
        &self,
        claims: &Map<String, Value>,
        access_token: Option<&str>,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<Resolved, GraphError> {
        self.check_tenant(claims)?;
        let mut resolved = self.token_groups(claims);
        let mut bearer: Option<Token> = None;

        if resolved.overage || self.trigger == Trigger::Always {
            let key = self.user_key(claims)?;
            let cached = self.memberships.as_ref().and_then(|c| c.get(&key));
            crate::metrics::get().cache("graph_memberships", cached.is_some());
            let members = match cached {
                Some(hit) => hit,
                None => {
                    let token = self.bearer(&mut bearer, claims, access_token, deadline, stage).await?;
                    let list = std::sync::Arc::new(self.fetch_memberships(claims, &token, deadline, stage).await?);
                    if let Some(cache) = &self.memberships {
                        cache.insert(key, list.clone());
                    }
                    list
                }
            };
            for g in members.iter() {
                if let Some(names) = &self.names {
                    names.insert(group_key(&g.id), g.name.clone());
                }
            }
            merge(&mut resolved.groups, &members);
            resolved.from_graph = true;
        }

        if self.resolve_names {
            let mut missing = Vec::new();
            for g in resolved.groups.iter_mut().filter(|g| g.name.is_none() && is_guid(&g.id)) {
                let cached = self.cached_name(&g.id);
                crate::metrics::get().cache("graph_names", cached.is_some());
                match cached {
                    Some(name) => g.name = name,
                    None => missing.push(g.id.clone()),
                }
            }
            if !missing.is_empty() {
                let token = self.bearer(&mut bearer, claims, access_token, deadline, stage).await?;
                let found = self.fetch_names(&missing, &token, deadline, stage).await?;
                for g in resolved.groups.iter_mut() {
                    if let Some(name) = found.get(&group_key(&g.id)) {
                        g.name = name.clone();
                    }
                }
            }
        }
        Ok(resolved)
    }

    /// `client_credentials` reads any user of the directory by `oid`: the
    /// login must come from that directory, or its `oid` names nobody there.
    fn check_tenant(&self, claims: &Map<String, Value>) -> Result<(), GraphError> {
        let Some(expected) = &self.directory_id else { return Ok(()) };
        match claim_str(claims, "tid") {
            Some(tid) if tid.eq_ignore_ascii_case(expected) => Ok(()),
            tid => Err(GraphError::ForeignTenant {
                tid: tid.map(|t| shorten(&t.escape_default().to_string())),
                expected: expected.clone(),
            }),
        }
    }

    fn cached_name(&self, id: &str) -> Option<Option<String>> {
        self.names.as_ref()?.get(&group_key(id))
    }

    /// Memberships are cached per user: `oid` (with `tid`), else `sub`.
    fn user_key(&self, claims: &Map<String, Value>) -> Result<String, GraphError> {
        let tid = claim_str(claims, "tid").unwrap_or_default();
        if let Some(oid) = claim_str(claims, "oid").filter(|o| !o.is_empty()) {
            return Ok(format!("oid:{tid}:{}", oid.to_ascii_lowercase()));
        }
        if self.mode == Mode::ClientCredentials {
            return Err(GraphError::MissingClaim {
                claim: "oid",
                purpose: "look the user up with an app token (request the `profile` scope)",
            });
        }
        match claim_str(claims, "sub").filter(|s| !s.is_empty()) {
            Some(sub) => Ok(format!("sub:{tid}:{sub}")),
            None => Err(GraphError::MissingClaim { claim: "sub", purpose: "tell whose memberships are cached" }),
        }
    }

    /// The token for Graph calls in this lookup, fetched at most once.
    async fn bearer(
        &self,
        memo: &mut Option<Token>,
        claims: &Map<String, Value>,
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

    async fn forget_app_token(&self) {
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

    /// `transitiveMemberOf`, every page, groups only.
    async fn fetch_memberships(
        &self,
        claims: &Map<String, Value>,
        token: &Token,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<Vec<Group>, GraphError> {
        const DURING: &str = "reading transitiveMemberOf";
        stage.set("reading transitiveMemberOf from Microsoft Graph");
        let mut url = self.graph_path(&["v1.0"]);
        {
            let mut segments = url.path_segments_mut().expect("validated base URL");
            match self.mode {
                Mode::ClientCredentials => {
                    let oid = claim_str(claims, "oid").unwrap_or_default();
                    segments.extend(["users", oid.as_str(), "transitiveMemberOf"]);
                }
                Mode::Delegated | Mode::Obo => {
                    segments.extend(["me", "transitiveMemberOf"]);
                }
            }
        }
        let select = if self.security_groups_only { "id,displayName,securityEnabled" } else { "id,displayName" };
        url.set_query(Some(&format!("$select={select}&$top={PAGE_SIZE}")));

        let mut groups = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = self.get_json(&url, token, DURING, deadline).await?;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::Invalid { during: DURING, reason: "the page has no `value` list".into() })?;
            for item in items {
                if item.get("@odata.type").and_then(Value::as_str) != Some(GROUP_TYPE) {
                    continue;
                }
                if self.security_groups_only && item.get("securityEnabled") != Some(&Value::Bool(true)) {
                    continue;
                }
                let Some(id) = item.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
                let name = item.get("displayName").and_then(Value::as_str).filter(|s| !s.is_empty());
                if seen.insert(group_key(id)) {
                    groups.push(Group { id: id.to_string(), name: name.map(str::to_string) });
                }
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                None => return Ok(groups),
                Some(next) => url = self.same_origin(next, DURING)?,
            }
        }
        Err(GraphError::Invalid { during: DURING, reason: format!("more than {MAX_PAGES} pages") })
    }

    /// Names for group IDs through `$batch`, 20 at a time. IDs Graph does
    /// not know (404: deleted, or not visible) map to `None`.
    async fn fetch_names(
        &self,
        ids: &[String],
        token: &Token,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<HashMap<String, Option<String>>, GraphError> {
        const DURING: &str = "resolving group names";
        stage.set("resolving group names through Microsoft Graph $batch");
        let url = self.graph_path(&["v1.0", "$batch"]);
        let mut out = HashMap::new();
        for chunk in ids.chunks(BATCH_SIZE) {
            let mut pending: Vec<&String> = chunk.iter().collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let requests: Vec<Value> = pending
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        json!({"id": i.to_string(), "method": "GET", "url": format!("/groups/{id}?$select=id,displayName")})
                    })
                    .collect();
                let body = json!({ "requests": requests });
                let answer = self.post_json(&url, token, &body, DURING, deadline).await?;
                let responses = answer.get("responses").and_then(Value::as_array).ok_or_else(|| {
                    GraphError::Invalid { during: DURING, reason: "the $batch answer has no `responses`".into() }
                })?;
                let mut retry = Vec::new();
                let mut wait = Duration::ZERO;
                let mut retry_status = 429;
                let mut answered = HashSet::new();
                for r in responses {
                    let Some(index) = r.get("id").and_then(Value::as_str).and_then(|i| i.parse::<usize>().ok()) else {
                        continue;
                    };
                    let Some(id) = pending.get(index).copied() else { continue };
                    answered.insert(index);
                    let status = r.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let body = r.get("body").cloned().unwrap_or(Value::Null);
                    match status {
                        200 => {
                            let name = body.get("displayName").and_then(Value::as_str).filter(|s| !s.is_empty());
                            out.insert(group_key(id), name.map(str::to_string));
                        }
                        404 => {
                            out.insert(group_key(id), None);
                        }
                        429 | 503 => {
                            let after = r
                                .get("headers")
                                .and_then(|h| h.as_object())
                                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after")))
                                .and_then(|(_, v)| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()).or(v.as_u64()))
                                .map(Duration::from_secs)
                                .unwrap_or(DEFAULT_RETRY_AFTER);
                            wait = wait.max(after);
                            retry_status = status;
                            retry.push(id);
                        }
                        _ => return Err(self.graph_error(status, &body, DURING).await),
                    }
                }
                if answered.len() != pending.len() {
                    return Err(GraphError::Invalid {
                        during: DURING,
                        reason: "the $batch answer left requests unanswered".into(),
                    });
                }
                if !retry.is_empty() {
                    attempt += 1;
                    self.wait_retry(retry_status, wait, attempt, deadline, DURING).await?;
                }
                pending = retry;
            }
        }
        if let Some(cache) = &self.names {
            for (id, name) in &out {
                cache.insert(id.clone(), name.clone());
            }
        }
        Ok(out)
    }

    fn graph_path(&self, segments: &[&str]) -> Url {
        let mut url = self.graph_url.clone();
        url.path_segments_mut().expect("validated base URL").pop_if_empty().extend(segments);
        url
    }

    /// A `@odata.nextLink`, followed only on `graph_url`'s origin so the
    /// token is never sent elsewhere.
    fn same_origin(&self, next: &str, during: &'static str) -> Result<Url, GraphError> {
        let url = Url::parse(next)
            .map_err(|_| GraphError::Invalid { during, reason: "the @odata.nextLink is not a URL".into() })?;
        if url.origin() != self.graph_url.origin() {
            return Err(GraphError::Invalid {
                during,
                reason: format!(
                    "the @odata.nextLink points to {} instead of graph_url; not sending the token there",
                    url.host_str().unwrap_or("?")
                ),
            });
        }
        Ok(url)
    }

    async fn get_json(
        &self,
        url: &Url,
        token: &Token,
        during: &'static str,
        deadline: Instant,
    ) -> Result<Value, GraphError> {
        let response = self
            .send(during, deadline, || {
                self.http.get(url.clone()).bearer_auth(&token.0).header(ACCEPT, "application/json")
            })
            .await?;
        self.graph_answer(response, during).await
    }

    async fn post_json(
        &self,
        url: &Url,
        token: &Token,
        body: &Value,
        during: &'static str,
        deadline: Instant,
    ) -> Result<Value, GraphError> {
        let response = self
            .send(during, deadline, || {
                self.http.post(url.clone()).bearer_auth(&token.0).header(ACCEPT, "application/json").json(body)
            })
            .await?;
        self.graph_answer(response, during).await
    }

    async fn graph_answer(&self, response: reqwest::Response, during: &'static str) -> Result<Value, GraphError> {
        let status = response.status();
        if status.is_success() {
            return read_json(response, during).await;
        }
        let body = read_json(response, during).await.unwrap_or(Value::Null);
        Err(self.graph_error(status.as_u16(), &body, during).await)
    }

    /// Tells Graph's failures apart by status and `error.code`.
    async fn graph_error(&self, status: u16, body: &Value, during: &'static str) -> GraphError {
        let error = body.get("error");
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("").to_string();
        let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("");
        let code_or = |fallback: &str| if code.is_empty() { fallback.to_string() } else { shorten(&code) };
        match status {
            401 => {
                self.forget_app_token().await;
                GraphError::Unauthorized { during, code: code_or("Unauthorized"), hint: unauthorized_hint(self.mode) }
            }
            403 => GraphError::Forbidden { during, code: code_or("Forbidden"), hint: forbidden_hint(self.mode) },
            _ => GraphError::Status {
                status,
                code: code_or(StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")),
                during,
                detail: if message.is_empty() { String::new() } else { format!(": {}", shorten(message)) },
            },
        }
    }

    /// Sends a request, waiting out 429 (and 503 with `Retry-After`) as
    /// long as the deadline allows.
    async fn send(
        &self,
        during: &'static str,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GraphError> {
        let mut attempt = 0;
        loop {
            let response = build().send().await.map_err(|e| self.transport_error(e, during))?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            if !retryable {
                return Ok(response);
            }
            attempt += 1;
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER * 2u32.pow(attempt.min(4) - 1));
            self.wait_retry(status.as_u16(), wait, attempt, deadline, during).await?;
        }
    }

    /// Waits `wait` before retrying, unless that would overrun the deadline.
    async fn wait_retry(
        &self,
        status: u16,
        wait: Duration,
        attempt: u32,
        deadline: Instant,
        during: &'static str,
    ) -> Result<(), GraphError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if attempt > MAX_RETRIES {
            return Err(GraphError::Timeout {
                timeout: self.timeout,
                during: format!("{during}: still throttled (HTTP {status}) after {MAX_RETRIES} retries"),
            });
        }
        if wait >= left {
            return Err(GraphError::Timeout {
                timeout: self.timeout,
                during: format!(
                    "{during}: throttled (HTTP {status}) with Retry-After {}, beyond the lookup's timeout",
                    humantime::format_duration(wait)
                ),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn transport_error(&self, e: reqwest::Error, during: &'static str) -> GraphError {
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("?").to_string();
        if e.is_timeout() {
            return GraphError::Timeout { timeout: self.timeout, during: during.to_string() };
        }
        // reqwest's own text is terse ("error sending request"); the
        // sources say why (connection refused, TLS, DNS).
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        GraphError::Unreachable { host, during, reason: shorten(&reason) }
    }
}

/// `Retry-After` in seconds (Graph sends seconds, never a date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn read_json(response: reqwest::Response, during: &'static str) -> Result<Value, GraphError> {
    if response.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(GraphError::Invalid { during, reason: "the answer is too large".into() });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| GraphError::Invalid { during, reason: shorten(&e.without_url().to_string()) })?;
    if bytes.len() > MAX_BODY {
        return Err(GraphError::Invalid { during, reason: "the answer is too large".into() });
    }
    serde_json::from_slice(&bytes).map_err(|e| GraphError::Invalid { during, reason: format!("not JSON ({e})") })
}

/// Replaces any secret that an error text might echo.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "[redacted]");
    }
    out
}

/// Adds `more` to `groups`, by ID; a name from Graph fills a missing one.
fn merge(groups: &mut Vec<Group>, more: &[Group]) {
    let mut index: HashMap<String, usize> = groups.iter().enumerate().map(|(i, g)| (group_key(&g.id), i)).collect();
    for g in more {
        match index.get(&group_key(&g.id)) {
            Some(&i) => {
                if groups[i].name.is_none() {
                    groups[i].name = g.name.clone();
                }
            }
            None => {
                index.insert(group_key(&g.id), groups.len());
                groups.push(g.clone());
            }
        }
    }
}

fn claim_str(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => {
            items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRA: &str = "https://login.microsoftonline.com/0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11/v2.0";

    fn toml(issuer: &str, graph: &str) -> String {
        format!(
            "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"app-id\"\n\
             client_secret = \"oidc-secret-1\"\n[graph]\nenabled = true\n{graph}\n"
        )
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn overage_markers_are_detected() {
        // The JWT shape Entra documents for overage: a pointer, no `groups`.
        assert!(overage(&claims(json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/t/users/u/getMemberObjects"}}
        }))));
        assert!(overage(&claims(json!({"hasgroups": true}))));
        assert!(!overage(&claims(json!({"hasgroups": false, "groups": ["a"]}))));
        assert!(!overage(&claims(json!({"groups": ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"]}))));
        // Another distributed claim is not a groups overage.
        assert!(!overage(&claims(json!({
            "_claim_names": {"address": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://example.com/address"}}
        }))));
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

        let graph = Graph::new(&c).unwrap();
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

    #[test]
    fn header_values_follow_groups_header() {
        let r = Resolved {
            groups: vec![
                Group { id: "0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11".into(), name: Some("photo-admins".into()) },
                Group { id: "7c1e2b3a-0000-4000-8000-000000000002".into(), name: None },
                Group { id: "family".into(), name: None },
            ],
            overage: false,
            from_graph: false,
        };
        assert_eq!(
            r.header_values(GroupsHeader::Names),
            ["photo-admins", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert_eq!(
            r.header_values(GroupsHeader::Ids),
            ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert_eq!(
            r.header_values(GroupsHeader::Both),
            ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11", "photo-admins", "7c1e2b3a-0000-4000-8000-000000000002", "family"]
        );
        assert!(r.membership_known());
        assert!(!Resolved { groups: vec![], overage: true, from_graph: false }.membership_known());
    }

    #[test]
    fn merge_deduplicates_guids_case_insensitively() {
        let mut groups = vec![Group { id: "0B6F6A4E-3C1D-4F43-9A4B-4E1F0A2C9D11".into(), name: None }];
        merge(
            &mut groups,
            &[
                Group { id: "0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11".into(), name: Some("photo-admins".into()) },
                Group { id: "7c1e2b3a-0000-4000-8000-000000000002".into(), name: Some("staff".into()) },
            ],
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].name.as_deref(), Some("photo-admins"));
        assert_eq!(groups[1].name.as_deref(), Some("staff"));
    }

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

    #[test]
    fn guids_are_recognised() {
        assert!(is_guid("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"));
        assert!(is_guid("0B6F6A4E-3C1D-4F43-9A4B-4E1F0A2C9D11"));
        assert!(!is_guid("photo-admins"));
        assert!(!is_guid("0b6f6a4e3c1d4f439a4b4e1f0a2c9d11"));
        assert!(!is_guid("0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d1g"));
    }
}
