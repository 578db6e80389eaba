//! What the proxy tells portcullis about the original request: its URL and
//! method, the browser's cookies, the client's address.
//!
//! Everything here reads untrusted headers; malformed input is an error
//! with a reason that is safe to show, never a panic.

use std::borrow::Cow;
use std::net::SocketAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::view::RequestView;

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

/// The headers in which a proxy reports the original request, read in one
/// pass over the request's headers (on every verify: one walk instead of a
/// hashed lookup per name). Each holds its one value, or the reason it
/// cannot be used: not valid text, or sent twice with different values.
#[derive(Debug)]
pub struct Reported<'a> {
    original_url: Slot<'a>,
    original_method: Slot<'a>,
    forwarded_method: Slot<'a>,
    forwarded_proto: Slot<'a>,
    forwarded_host: Slot<'a>,
    forwarded_uri: Slot<'a>,
    /// `Host`: its first value.
    host: Slot<'a>,
    /// `Authorization` and `Proxy-Authorization`, the first value of each:
    /// where a credential may come (read by `credentials`).
    pub authorization: Option<&'a HeaderValue>,
    pub proxy_authorization: Option<&'a HeaderValue>,
}

type Slot<'a> = Result<Option<&'a str>, &'static str>;

impl<'a> Reported<'a> {
    pub fn read(headers: &'a HeaderMap) -> Reported<'a> {
        let mut r = Reported {
            original_url: Ok(None),
            original_method: Ok(None),
            forwarded_method: Ok(None),
            forwarded_proto: Ok(None),
            forwarded_host: Ok(None),
            forwarded_uri: Ok(None),
            host: Ok(None),
            authorization: None,
            proxy_authorization: None,
        };
        for (name, value) in headers {
            let slot = match name.as_str() {
                "x-original-url" => &mut r.original_url,
                "x-original-method" => &mut r.original_method,
                "x-forwarded-method" => &mut r.forwarded_method,
                "x-forwarded-proto" => &mut r.forwarded_proto,
                "x-forwarded-host" => &mut r.forwarded_host,
                "x-forwarded-uri" => &mut r.forwarded_uri,
                "host" => {
                    if r.host == Ok(None) {
                        r.host = text(value).map(Some);
                    }
                    continue;
                }
                "authorization" => {
                    r.authorization = r.authorization.or(Some(value));
                    continue;
                }
                "proxy-authorization" => {
                    r.proxy_authorization = r.proxy_authorization.or(Some(value));
                    continue;
                }
                _ => continue,
            };
            // A header that names one thing: every copy of it the same.
            *slot = match (*slot, text(value)) {
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(None), Ok(v)) => Ok(Some(v)),
                (Ok(Some(first)), Ok(v)) if first == v => Ok(Some(first)),
                (Ok(Some(_)), Ok(_)) => Err("a forwarded header is sent twice with different values"),
            };
        }
        r
    }
}

/// A header's value as trimmed text; an error when it is not valid text.
fn text(value: &HeaderValue) -> Result<&str, &'static str> {
    value.to_str().map(str::trim).map_err(|_| "a forwarded header is not valid text")
}


/// The original request's URL, as verify reads it: host and path, and
/// the whole URL when it is needed (to send a browser to sign in).
///
/// Nearly every URL a proxy reports is plain: a lower-case DNS name and a
/// path the URL parser would leave as it is. Its host and path are then
/// read in place, on every verify, with no parse and no copy; anything
/// else goes through the full parse.
#[derive(Debug)]
pub struct Original<'a> {
    host: &'a str,
    path: &'a str,
    source: Source<'a>,
}

#[derive(Debug)]
enum Source<'a> {
    /// `X-Original-URL`.
    Text(&'a str),
    /// `X-Forwarded-Proto`, `-Host` and `-Uri`.
    Parts { proto: &'static str, host: &'a str, uri: &'a str },
    /// Read by the full parse; host and path point into it.
    Parsed(Box<Url>),
}

impl Original<'_> {
    /// Lower-case, without port.
    pub fn host(&self) -> &str {
        match &self.source {
            Source::Parsed(url) => url.host_str().unwrap_or_default(),
            _ => self.host,
        }
    }

    pub fn path(&self) -> &str {
        match &self.source {
            Source::Parsed(url) => url.path(),
            _ => self.path,
        }
    }

    /// The whole URL, as the URL parser writes it.
    pub fn url(&self) -> Result<Url, &'static str> {
        let unexpected = |_| "the original URL does not parse";
        match &self.source {
            Source::Text(text) => Url::parse(text).map_err(unexpected),
            Source::Parts { proto, host, uri } => Url::parse(&format!("{proto}://{host}{uri}")).map_err(unexpected),
            Source::Parsed(url) => Ok(Url::clone(url)),
        }
    }

    /// The request view of this URL (without a method). A host read in
    /// place is already what the view's normalising would make of it (a
    /// test holds the two together), so it is taken as it is.
    pub fn view(&self) -> Result<RequestView<'_>, &'static str> {
        match &self.source {
            Source::Parsed(_) => RequestView::new(self.host(), self.path(), None),
            _ => {
                let (path, decoded) = crate::view::path_views(self.path)?;
                Ok(RequestView { host: Cow::Borrowed(self.host), raw_path: Cow::Borrowed(self.path), path, decoded, method: None })
            }
        }
    }

    fn parsed(url: Url) -> Original<'static> {
        Original { host: "", path: "", source: Source::Parsed(Box::new(url)) }
    }
}

/// The original request's URL, from `X-Original-URL` or `X-Forwarded-*`.
///
/// `default_scheme` is used when the proxy does not say (`public_url`'s).
pub fn original_url<'a>(reported: &Reported<'a>, flavor: Flavor, default_scheme: &str) -> Result<Original<'a>, &'static str> {
    if flavor == Flavor::Nginx {
        if let Some(text) = reported.original_url? {
            let original = nginx_original_url(text)?;
            agrees_with_forwarded(reported, text, &original)?;
            return Ok(original);
        }
    }
    let proto = forwarded_proto(reported, default_scheme)?;
    let host = forwarded_host(reported)?;
    let uri = reported.forwarded_uri?.unwrap_or("/");
    if !uri.starts_with('/') || uri.starts_with("//") {
        return Err("X-Forwarded-Uri must be a path starting with a single /");
    }
    if uri.contains('#') {
        return Err(FRAGMENT);
    }
    if let (Some(plain_host), Some(path)) = (plain_host(host), plain_path(uri)) {
        return Ok(Original { host: plain_host, path, source: Source::Parts { proto, host, uri } });
    }
    if !plain_target(uri) {
        return Err(NOT_PLAIN);
    }
    let url = Url::parse(&format!("{proto}://{host}{uri}")).map_err(|_| "X-Forwarded-Host/Uri do not form a URL")?;
    if url.host_str().is_none() {
        return Err("X-Forwarded-Host is not a host");
    }
    Ok(Original::parsed(url))
}

/// `X-Original-URL`, read.
fn nginx_original_url(text: &str) -> Result<Original<'_>, &'static str> {
    // A browser never sends a fragment; NGINX passes a raw `#` on as part
    // of the path, which the app may read past (`/public/x#/../../admin`).
    if text.contains('#') {
        return Err(FRAGMENT);
    }
    if let Some((host, path)) = plain_url(text) {
        return Ok(Original { host, path, source: Source::Text(text) });
    }
    let url = Url::parse(text).map_err(|_| "X-Original-URL is not an absolute URL")?;
    if url.scheme() != "http" && url.scheme() != "https" || url.host_str().is_none() {
        return Err("X-Original-URL must be an http(s) URL with a host");
    }
    if !plain_target(text) {
        return Err(NOT_PLAIN);
    }
    Ok(Original::parsed(url))
}

const FRAGMENT: &str = "the request target holds a #, which browsers never send";

/// On `/auth/nginx`, `X-Original-URL` is what portcullis reads; a proxy
/// set up for other forward-auth services may send `X-Forwarded-*` as
/// well (or instead, with a client's own `X-Original-URL` passed through).
/// Both sets must then name the same request.
fn agrees_with_forwarded(reported: &Reported, text: &str, original: &Original) -> Result<(), &'static str> {
    const DISAGREE: &str = "X-Original-URL and X-Forwarded-Proto/Host/Uri name different requests";
    if let Some(uri) = reported.forwarded_uri? {
        let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
        let target = after_scheme.find(['/', '?']).map_or("/", |i| &after_scheme[i..]);
        if uri != target {
            return Err(DISAGREE);
        }
    }
    if reported.forwarded_host != Ok(None) {
        let named = crate::view::normalize_host(strip_port(forwarded_host(reported)?)).map_err(|_| DISAGREE)?;
        if crate::view::normalize_host(original.host()).ok().as_deref() != Some(named.as_ref()) {
            return Err(DISAGREE);
        }
    }
    if reported.forwarded_proto != Ok(None) {
        let scheme = text.split_once("://").map_or("", |(s, _)| s);
        if !forwarded_proto(reported, "https")?.eq_ignore_ascii_case(scheme) {
            return Err(DISAGREE);
        }
    }
    Ok(())
}

/// `host` without its `:port`.
fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

/// Host and path of `http(s)://host[:port]/path?query#fragment` when the
/// URL parser would take both as they are (see [`plain_host`] and
/// [`plain_path`]); `None` leaves the text to the full parse.
fn plain_url(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"))?;
    let end = rest.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let host = plain_host(authority)?;
    if target.starts_with('/') {
        Some((host, plain_path(target)?))
    } else {
        // No path: the parser makes it `/`.
        plain_target(target).then_some((host, "/"))
    }
}

/// The host of `host[:port]` when the URL parser keeps it as it is:
/// lower-case labels of letters, digits and `-`, none empty or `xn--`
/// (punycode, which the parser checks), the last starting with a letter
/// (never an IPv4 address, which the parser rewrites), and a port of at
/// most 65535.
fn plain_host(authority: &str) -> Option<&str> {
    // On every verify: one pass over the bytes.
    let b = authority.as_bytes();
    let colon = b.iter().position(|&c| c == b':').unwrap_or(b.len());
    let (host, port) = (&b[..colon], b.get(colon + 1..));
    if let Some(port) = port {
        let digits = !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
        if !digits || port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) > 65535 {
            return None;
        }
    }
    let plain_label = |label: &[u8]| !label.is_empty() && !label.starts_with(b"xn--");
    let mut label = 0;
    for (i, &c) in host.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => {}
            b'.' if plain_label(&host[label..i]) => label = i + 1,
            _ => return None,
        }
    }
    let last = &host[label..];
    (plain_label(last) && last[0].is_ascii_lowercase()).then(|| &authority[..colon])
}

/// The path of a request target when the URL parser keeps it as it is:
/// visible ASCII that needs no escaping, and the target passes
/// [`plain_target`].
fn plain_path(target: &str) -> Option<&str> {
    // On every verify: one pass over the path, segment by segment (no
    // backslash or tab passes the byte check), and the query for tabs.
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut segment = 1;
    for (i, &c) in bytes.iter().enumerate().skip(1) {
        match c {
            b'/' | b'?' | b'#' => {
                if is_dot_segment(&bytes[segment..i]) {
                    return None;
                }
                if c != b'/' {
                    return (!bytes[i..].contains(&b'\t')).then(|| &target[..i]);
                }
                segment = i + 1;
            }
            b'!' | b'$'..=b'.' | b'0'..=b';' | b'=' | b'@'..=b'[' | b']' | b'^' | b'_' | b'a'..=b'z' | b'|' | b'~' => {}
            _ => return None,
        }
    }
    (!is_dot_segment(&bytes[segment..])).then_some(target)
}

/// A request target's path: up to `?` or `#`.
fn path_of(target: &[u8]) -> &[u8] {
    &target[..target.iter().position(|b| matches!(b, b'?' | b'#')).unwrap_or(target.len())]
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
    let path = path_of(target);
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

/// The original request's method as the proxy reports it (`X-Original-
/// Method` or `X-Forwarded-Method` on `/auth/nginx`, which must agree when
/// both are sent; `X-Forwarded-Method` on `/auth/forward`), upper-case;
/// `None` when it reports none. Never the verify request's own method,
/// which is the proxy's, not the client's.
pub fn original_method<'a>(reported: &Reported<'a>, flavor: Flavor) -> Result<Option<Cow<'a, str>>, &'static str> {
    let forwarded = reported.forwarded_method?.map(crate::view::normalize_method).transpose()?;
    if flavor == Flavor::Forward {
        return Ok(forwarded);
    }
    match reported.original_method?.map(crate::view::normalize_method).transpose()? {
        Some(m) if forwarded.as_ref().is_some_and(|f| *f != m) => {
            Err("X-Original-Method and X-Forwarded-Method name different methods")
        }
        Some(m) => Ok(Some(m)),
        None => Ok(forwarded),
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
            // On every verify: bytes, not char patterns (a valid header
            // value is ASCII, its only white space spaces and tabs).
            let eq = pair.bytes().position(|b| b == b'=')?;
            let value = pair[eq + 1..].trim_ascii();
            let b = value.as_bytes();
            let start = b.iter().take_while(|&&c| c == b'"').count();
            let end = b.len() - b[start..].iter().rev().take_while(|&&c| c == b'"').count();
            Some((pair[..eq].trim_ascii(), &value[start..end]))
        })
}


/// The original request's scheme and host, as the browser sees it.
pub fn request_base(headers: &HeaderMap, default_scheme: &str) -> Option<Url> {
    let reported = Reported::read(headers);
    // An unusable X-Forwarded-Proto falls back to the default scheme here.
    let proto = forwarded_proto(&reported, default_scheme).unwrap_or(default_scheme);
    let host = forwarded_host(&reported).ok()?;
    Url::parse(&format!("{proto}://{host}/")).ok()
}

/// The scheme the proxy reports (the first of `X-Forwarded-Proto`), else
/// `default_scheme`; an error when it is neither http nor https.
fn forwarded_proto(reported: &Reported, default_scheme: &str) -> Result<&'static str, &'static str> {
    let scheme = |p: &str| ["http", "https"].into_iter().find(|s| s.eq_ignore_ascii_case(p));
    match reported.forwarded_proto? {
        Some(p) => scheme(one_of_list(p)?).ok_or("X-Forwarded-Proto must be http or https"),
        // `public_url`'s scheme, http or https (checked at start).
        None => Ok(scheme(default_scheme).unwrap_or("https")),
    }
}

/// The host the proxy reports (the first of `X-Forwarded-Host`, else
/// `Host`), refusing anything that is not a bare host.
fn forwarded_host<'a>(reported: &Reported<'a>) -> Result<&'a str, &'static str> {
    let host = match reported.forwarded_host? {
        Some(h) => one_of_list(h)?,
        None => reported.host?.ok_or("no X-Forwarded-Host or Host header")?,
    };
    if host.is_empty() || host.contains(['/', '\\', '@', '?', '#']) {
        return Err("X-Forwarded-Host is not a host");
    }
    Ok(host)
}


/// The one value of a comma-separated list whose items must all agree
/// (a proxy that appends to `X-Forwarded-Host` or `-Proto` instead of
/// setting it may pass a client's value on in front).
fn one_of_list(value: &str) -> Result<&str, &'static str> {
    let mut items = value.split(',').map(str::trim);
    let first = items.next().unwrap_or("");
    if items.any(|i| !i.eq_ignore_ascii_case(first)) {
        return Err("X-Forwarded-Host or -Proto lists different values");
    }
    Ok(first)
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
    use proptest::strategy::Strategy as _;

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

    #[test]
    fn plain_urls_are_read_in_place_and_others_parsed() {
        for (text, host, path) in [
            ("https://photos.example.com/albums/1?x=%20y#top", "photos.example.com", "/albums/1"),
            ("http://app-1.example.com:8080", "app-1.example.com", "/"),
            ("http://localhost/a%2Fb;c=d", "localhost", "/a%2Fb;c=d"),
        ] {
            assert_eq!(plain_url(text), Some((host, path)), "{text}");
        }
        // Each of these the URL parser would rewrite (or refuse): left to it.
        for text in [
            "HTTPS://a.example.com/", "https://A.example.com/", "https://127.0.0.1/", "https://0x7f.1/",
            "https://xn--bcher-kva.example/", "https://user@a.example.com/", "https://a.example.com:99999/",
            "https://a.example.com:/", "https://a..example.com/", "https://a.example.com./", "https://[::1]/",
            "https://a.example.com/a b", "https://a.example.com/{x}", "https://a.example.com/a\\b",
            "https://a.example.com/a/../b", "https://a.example.com/%2e/b", "https://a.example.com/?q=\t",
            "ftp://a.example.com/",
        ] {
            assert_eq!(plain_url(text), None, "{text}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Whatever is read in place is what the URL parser reads.
        #[test]
        fn plain_parts_agree_with_the_url_parser(
            scheme in proptest::sample::select(&["http://", "https://"][..]),
            host in proptest::prop_oneof![
                // Labels and a port, as real hosts are written...
                (proptest::collection::vec(pieces(PLAIN_HOST_PIECES, HOST_PIECES), 1..4), proptest::sample::select(PORTS))
                    .prop_map(|(labels, port)| labels.iter().map(|l| l.concat()).collect::<Vec<_>>().join(".") + port),
                // ...or anything.
                pieces(PLAIN_HOST_PIECES, HOST_PIECES).prop_map(|p| p.concat()),
            ],
            target in proptest::prop_oneof![
                3 => pieces(PLAIN_TARGET_PIECES, TARGET_PIECES).prop_map(|p| format!("/{}", p.concat())),
                1 => pieces(PLAIN_TARGET_PIECES, TARGET_PIECES).prop_map(|p| p.concat()),
            ],
        ) {
            let text = format!("{scheme}{host}{target}");
            if let Some(h) = plain_host(&host) {
                proptest::prop_assert_eq!(crate::view::normalize_host(h), Ok(Cow::Borrowed(h)), "{}", host);
            }
            if let Some((h, p)) = plain_url(&text) {
                let url = Url::parse(&text);
                proptest::prop_assert!(url.is_ok(), "{}", text);
                let url = url.unwrap();
                proptest::prop_assert_eq!(Some(h), url.host_str(), "{}", text);
                proptest::prop_assert_eq!(p, url.path(), "{}", text);
                proptest::prop_assert!(plain_target(&text), "{}", text);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// The one-pass readings give what the plain, several-pass
        /// definitions give.
        #[test]
        fn one_pass_readings_agree_with_their_definitions(
            target in pieces(PLAIN_TARGET_PIECES, TARGET_PIECES).prop_map(|p| p.concat()),
            cookie in proptest::collection::vec(proptest::sample::select(COOKIE_PIECES), 0..10).prop_map(|p| p.concat()),
        ) {
            let path = path_of(target.as_bytes());
            let defined = (path.first() == Some(&b'/')
                && path.iter().all(|&c| {
                    matches!(c, b'!' | b'$'..=b';' | b'=' | b'@'..=b'[' | b']' | b'^' | b'_' | b'a'..=b'z' | b'|' | b'~')
                })
                && plain_target(&target))
                .then(|| &target[..path.len()]);
            proptest::prop_assert_eq!(plain_path(&target), defined, "{:?}", target);

            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                headers.insert(header::COOKIE, v);
                let defined: Vec<(&str, &str)> = cookie
                    .split(';')
                    .filter_map(|pair| {
                        let (n, v) = pair.trim().split_once('=')?;
                        Some((n.trim(), v.trim().trim_matches('"')))
                    })
                    .collect();
                proptest::prop_assert_eq!(cookie_pairs(&headers).collect::<Vec<_>>(), defined, "{:?}", cookie);
            }
        }
    }

    const COOKIE_PIECES: &[&str] = &["a", "_portcullis", "=", ";", " ", "\t", "\"", "x y", "==", "%3D", ";;"];

    /// Mostly pieces the parser leaves alone, now and then one it may not.
    fn pieces(plain: &'static [&'static str], other: &'static [&'static str]) -> impl proptest::strategy::Strategy<Value = Vec<&'static str>> {
        use proptest::prelude::*;
        let piece = prop_oneof![6 => proptest::sample::select(plain), 1 => proptest::sample::select(other)];
        proptest::collection::vec(piece, 0..8)
    }

    const PLAIN_HOST_PIECES: &[&str] = &["a", "example", "com", "-", "1", "09", "xn--", "x"];
    const PLAIN_TARGET_PIECES: &[&str] = &["/", "a", ".", "%2e", "%41", "?", "#", "=", ";", "~", "|", "^", "@"];
    const PORTS: &[&str] = &["", "", ":80", ":8443", ":65535", ":65536", ":", ":0", ":-1"];
    const HOST_PIECES: &[&str] = &[
        "a", "example", "com", ".", "-", "1", "09", "0x", "xn--", "xn--bcher-kva", "A", "_", "%41", "@", "user:pw@",
        ":", "80", "443", "65535", "65536", "99999", "[::1]", "\u{e9}", "\u{3002}", "\u{ff0e}", " ", "\t",
    ];
    const TARGET_PIECES: &[&str] = &[
        "/", "a", ".", "..", "%2e", "%2E", "%", "%zz", "%41", "\\", "\"", "<", ">", "`", "{", "}", "|", "^", "~",
        " ", "\t", "?", "#", "&", "=", ";", ":", "@", "[", "]", "\u{e9}", "//", "'", "!", "$", "*", "+", ",",
    ];
}
