//! What the proxy tells portcullis about the original request: its URL and
//! method, the browser's cookies, the client's address.
//!
//! Everything here reads untrusted headers; malformed input is an error
//! with a reason that is safe to show, never a panic.

use std::net::SocketAddr;

use hyper::Method;
use hyper::header::{self, HeaderMap, HeaderName};
use url::Url;

// Looked up on every verify: named once, not parsed from text each time.
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Which kind of proxy is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// NGINX `auth_request`: 401 when signed out.
    Nginx,
    /// Caddy `forward_auth` / Traefik ForwardAuth: browsers are redirected.
    Forward,
}


/// The original request's URL, from `X-Original-URL` or `X-Forwarded-*`.
///
/// `default_scheme` is used when the proxy does not say (`public_url`'s).
pub fn original_url(headers: &HeaderMap, flavor: Flavor, default_scheme: &str) -> Result<Url, &'static str> {
    if flavor == Flavor::Nginx {
        if let Some(v) = headers.get(X_ORIGINAL_URL) {
            // Trimmed as the URL parser trims it, so the checks below see
            // the very text the parse does.
            let text = v.to_str().map_err(|_| "X-Original-URL is not valid text")?.trim();
            let url = Url::parse(text).map_err(|_| "X-Original-URL is not an absolute URL")?;
            if url.scheme() != "http" && url.scheme() != "https" || url.host_str().is_none() {
                return Err("X-Original-URL must be an http(s) URL with a host");
            }
            if !plain_target(text) {
                return Err(NOT_PLAIN);
            }
            return Ok(url);
        }
    }
    let proto = forwarded_proto(headers, default_scheme)?;
    let host = forwarded_host(headers)?;
    let uri = header_str(headers, &X_FORWARDED_URI)?.unwrap_or("/");
    if !uri.starts_with('/') || uri.starts_with("//") {
        return Err("X-Forwarded-Uri must be a path starting with a single /");
    }
    if !plain_target(uri) {
        return Err(NOT_PLAIN);
    }
    let url = Url::parse(&format!("{proto}://{host}{uri}")).map_err(|_| "X-Forwarded-Host/Uri do not form a URL")?;
    if url.host_str().is_none() {
        return Err("X-Forwarded-Host is not a host");
    }
    Ok(url)
}

const NOT_PLAIN: &str = "the request path holds a backslash, a tab or a dot segment";

/// Whether a request target (path, query, fragment) reaches the app as
/// portcullis reads it. The URL parse rewrites a backslash in the path to
/// `/`, drops tabs, and resolves `.` and `..` segments (also written
/// `%2e`), so `/admin\..\public` would be judged as `/public` while the
/// app is asked for something under `/admin`. Browsers never send these
/// (they make the same rewrites first); anything else gets a clear error.
fn plain_target(target: &str) -> bool {
    // On every verify: bytes, one pass each, no allocation.
    let target = target.as_bytes();
    let path = &target[..target.iter().position(|b| matches!(b, b'?' | b'#')).unwrap_or(target.len())];
    !target.contains(&b'\t') && !path.contains(&b'\\') && !path.split(|b| *b == b'/').any(is_dot_segment)
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E`.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() && dots < 3 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    rest.is_empty() && (dots == 1 || dots == 2)
}

/// The original request's method, else the method of the request itself.
pub fn original_method(headers: &HeaderMap, method: &Method, flavor: Flavor) -> String {
    let names: &[HeaderName] = match flavor {
        Flavor::Nginx => &[X_ORIGINAL_METHOD, X_FORWARDED_METHOD],
        Flavor::Forward => &[X_FORWARDED_METHOD],
    };
    names
        .iter()
        .find_map(|n| headers.get(n).and_then(|v| v.to_str().ok()))
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()))
        .unwrap_or_else(|| method.as_str().to_string())
}

/// A header as trimmed text; an error when it is not valid text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, &'static str> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| "a forwarded header is not valid text"),
    }
}

/// Whether the client is a browser asking for a page.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Values of the cookies called `name`.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cookie_pairs(headers).filter(move |(n, _)| *n == name).map(|(_, v)| v)
}

/// Every `name=value` pair of the `Cookie` headers; malformed pairs are skipped.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            Some((n.trim(), v.trim().trim_matches('"')))
        })
}


/// The original request's scheme and host, as the browser sees it.
pub fn request_base(headers: &HeaderMap, default_scheme: &str) -> Option<Url> {
    // An unusable X-Forwarded-Proto falls back to the default scheme here.
    let proto = forwarded_proto(headers, default_scheme).unwrap_or_else(|_| default_scheme.to_string());
    let host = forwarded_host(headers).ok()?;
    Url::parse(&format!("{proto}://{host}/")).ok()
}

/// The scheme the proxy reports (the first of `X-Forwarded-Proto`), else
/// `default_scheme`; an error when it is neither http nor https.
fn forwarded_proto(headers: &HeaderMap, default_scheme: &str) -> Result<String, &'static str> {
    match header_str(headers, &X_FORWARDED_PROTO)? {
        Some(p) => {
            let p = p.split(',').next().unwrap_or("").trim().to_ascii_lowercase();
            if p != "http" && p != "https" {
                return Err("X-Forwarded-Proto must be http or https");
            }
            Ok(p)
        }
        None => Ok(default_scheme.to_string()),
    }
}

/// The host the proxy reports (the first of `X-Forwarded-Host`, else
/// `Host`), refusing anything that is not a bare host.
fn forwarded_host(headers: &HeaderMap) -> Result<&str, &'static str> {
    let host = match header_str(headers, &X_FORWARDED_HOST)? {
        Some(h) => h.split(',').next().unwrap_or("").trim(),
        None => header_str(headers, &header::HOST)?.ok_or("no X-Forwarded-Host or Host header")?,
    };
    if host.is_empty() || host.contains(['/', '\\', '@', '?', '#']) {
        return Err("X-Forwarded-Host is not a host");
    }
    Ok(host)
}


/// The client's address as the proxy reports it, else the peer's.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get(X_REAL_IP)
        .or_else(|| headers.get(X_FORWARDED_FOR))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| peer.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_in_any_spelling() {
        for s in [".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2e."] {
            assert!(is_dot_segment(s.as_bytes()), "{s}");
        }
        for s in ["", "...", "%2e%2e%2e", ".a", "a.", "%2", "%2f", ".%2", "%2e%", "photos"] {
            assert!(!is_dot_segment(s.as_bytes()), "{s}");
        }
        assert!(!plain_target("/admin/%2E%2e/public"));
        assert!(!plain_target("/admin\\..\\public"));
        assert!(plain_target("/photos/2026/...jpg?x=/../"));
    }
}
