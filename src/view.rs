//! The request view: the one reading of the original request that every
//! decision uses (policy rules, expressions, `explain`).
//!
//! The app behind the proxy reads the request itself, and apps read paths
//! differently: some decode `%2F` into a separator (Werkzeug), some drop
//! `;params` from each segment (Tomcat, Jetty), some ignore case or a
//! trailing dot (Windows-style servers). So a path is read twice:
//!
//! - the **path**: repeated slashes collapsed and percent-encoded
//!   unreserved characters decoded (`/%61dmin` is `/admin`), the rest as
//!   sent;
//! - the **decoded path**: every escape decoded once, `\` read as `/`, each
//!   segment's `;params` removed, trailing dots and spaces of a segment
//!   removed, repeated slashes collapsed.
//!
//! A path that could mean a different resource to some app is refused
//! (400): a dot segment (`.`, `..`, encoded or `;`-suffixed) in either
//! reading, `%00` or another control character, an escape that does not
//! decode, a double-encoded separator or dot (`%252f`), or bytes that do
//! not decode to UTF-8. Policy then needs every reading to match before a
//! rule that lets people in without requirements applies, and any reading
//! (in any letter case) to match before a rule that protects applies.
//!
//! Hosts are lower-case, without a trailing dot or a port, IDNs in their
//! ASCII form. Methods are RFC 9110 tokens, upper-cased.
//!
//! This is a leaf: it imports nothing from the rest of portcullis.

use std::borrow::Cow;

/// The original request as portcullis judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestView<'a> {
    /// Lower-case host without port or trailing dot.
    pub host: Cow<'a, str>,
    /// The path as the proxy reported it (without query).
    pub raw_path: Cow<'a, str>,
    /// The path: slashes collapsed, unreserved characters decoded.
    pub path: Cow<'a, str>,
    /// The decoded path, when it differs from `path`.
    pub decoded: Option<Cow<'a, str>>,
    /// Upper-case; `None` when the proxy did not say.
    pub method: Option<Cow<'a, str>>,
}

impl<'a> RequestView<'a> {
    /// The view of a host, raw path and method as a proxy reports them;
    /// the error is a reason safe to show.
    pub fn new(host: &'a str, raw_path: &'a str, method: Option<&'a str>) -> Result<RequestView<'a>, &'static str> {
        let (path, decoded) = path_views(raw_path)?;
        Ok(RequestView {
            host: normalize_host(host)?,
            raw_path: Cow::Borrowed(raw_path),
            path,
            decoded,
            method: method.map(normalize_method).transpose()?,
        })
    }

    /// Every reading of the path: the path, then the decoded path when it
    /// differs.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.path.as_ref()).chain(self.decoded.as_deref())
    }

    /// The same view, owning its text.
    pub fn into_owned(self) -> RequestView<'static> {
        RequestView {
            host: Cow::Owned(self.host.into_owned()),
            raw_path: Cow::Owned(self.raw_path.into_owned()),
            path: Cow::Owned(self.path.into_owned()),
            decoded: self.decoded.map(|d| Cow::Owned(d.into_owned())),
            method: self.method.map(|m| Cow::Owned(m.into_owned())),
        }
    }
}

/// The path and, when it differs, the decoded path of a raw path (no
/// query, no fragment); an error when some app could read it as another
/// resource.
pub fn path_views(raw: &str) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), &'static str> {
    if !raw.starts_with('/') {
        return Err("the request path must start with /");
    }
    // On every verify: most paths need no reading changed, which one pass
    // over the bytes shows.
    if is_plain(raw.as_bytes()) {
        return Ok((Cow::Borrowed(raw), None));
    }
    let path = normalize_path(raw);
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(DOT_SEGMENT);
    }
    let decoded = decoded_path(raw)?;
    let decoded = (decoded != path).then_some(Cow::Owned(decoded));
    Ok((path, decoded))
}

const DOT_SEGMENT: &str = "the request path holds a dot segment (., .. or an encoded or ;-suffixed form)";

/// Whether both readings of `path` are `path` itself: visible ASCII with
/// no `%`, `;` or `\`, no `//`, no segment that is or ends in a dot.
fn is_plain(path: &[u8]) -> bool {
    let mut prev = b'/';
    for &c in path.iter().skip(1) {
        match c {
            b'%' | b';' | b'\\' => return false,
            b'/' if prev == b'/' || prev == b'.' => return false,
            c if !(0x21..0x7f).contains(&c) => return false,
            _ => {}
        }
        prev = c;
    }
    prev != b'.'
}

/// Collapses repeated slashes and decodes percent-encoded unreserved
/// characters, the way the upstream will read the path. Most paths have
/// neither and come back as they are.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.contains('%') && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let Some(c) = hex_byte(bytes[i + 1], bytes[i + 2]).filter(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c)) {
                out.push(c);
                i += 3;
                continue;
            }
        }
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| path.to_string()))
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(digit(hi)? << 4 | digit(lo)?)
}

/// The decoded path (see the module docs), or why the path is refused.
fn decoded_path(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let c = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) => hex_byte(hi, lo),
                _ => None,
            };
            decoded.push(c.ok_or("the request path holds a % that is not followed by two hex digits")?);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err("the request path holds %00 or another control character");
    }
    // What an app that decodes twice would read as a separator or a dot.
    if decoded.windows(3).any(|w| {
        w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f' | b'e' | b'5') | (b'5', b'c') | (b'0', b'0'))
    }) {
        return Err("the request path holds a double-encoded separator, dot or %");
    }
    // Where a `;param` ends depends on what an app takes for a separator:
    // `/;\\x/admin` is /admin to one app and /x/admin to another.
    let encoded_slash = raw.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
    if decoded.contains(&b';') && (decoded.contains(&b'\\') || encoded_slash) {
        return Err("the request path mixes ;params with a backslash or an encoded /");
    }
    let text = String::from_utf8(decoded).map_err(|_| "the request path does not decode to UTF-8 text")?;
    let mut out = String::with_capacity(text.len());
    let ends_with_separator = text.ends_with(['/', '\\']);
    for segment in text.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or_default();
        if !segment.is_empty() && segment.bytes().all(|c| c == b'.' || c == b' ') {
            return Err(DOT_SEGMENT);
        }
        let segment = segment.trim_end_matches(['.', ' ']);
        if !segment.is_empty() {
            out.push('/');
            out.push_str(segment);
        }
    }
    if out.is_empty() || ends_with_separator {
        out.push('/');
    }
    Ok(out)
}

/// A host in normal form: lower-case, without port or one trailing dot,
/// an IDN in its ASCII (punycode) form. Host patterns use the same form.
pub fn normalize_host(host: &str) -> Result<Cow<'_, str>, &'static str> {
    const NOT_A_HOST: &str = "the request's host is not a host name";
    let host = host.strip_suffix('.').unwrap_or(host);
    // On every verify: a lower-case DNS name is already in normal form.
    if is_plain_host(host.as_bytes()) {
        return Ok(Cow::Borrowed(host));
    }
    match url::Host::parse(host).map_err(|_| NOT_A_HOST)? {
        url::Host::Domain(d) if !d.is_empty() && !d.ends_with('.') => Ok(Cow::Owned(d)),
        url::Host::Domain(_) => Err(NOT_A_HOST),
        url::Host::Ipv4(ip) => Ok(Cow::Owned(ip.to_string())),
        url::Host::Ipv6(ip) => Ok(Cow::Owned(format!("[{ip}]"))),
    }
}

/// Lower-case letters, digits, `-` and `.`, in labels none of which is
/// empty, and no `xn--` (punycode, which the full parse checks): one pass
/// over the bytes.
fn is_plain_host(host: &[u8]) -> bool {
    let mut prev = b'.';
    for (i, &c) in host.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => {}
            b'.' if prev != b'.' => {}
            _ => return false,
        }
        if c == b'x' && host[i..].starts_with(b"xn--") {
            return false;
        }
        prev = c;
    }
    prev != b'.'
}

/// A method in normal form (upper case); an error when it is not an RFC
/// 9110 token.
pub fn normalize_method(method: &str) -> Result<Cow<'_, str>, &'static str> {
    let m = method.trim();
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if m.is_empty() || !m.bytes().all(token) {
        return Err("the reported method is not an HTTP method (RFC 9110 token)");
    }
    Ok(if m.bytes().any(|c| c.is_ascii_lowercase()) { Cow::Owned(m.to_ascii_uppercase()) } else { Cow::Borrowed(m) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(raw: &str) -> Result<(String, Option<String>), &'static str> {
        path_views(raw).map(|(p, d)| (p.into_owned(), d.map(Cow::into_owned)))
    }

    #[test]
    fn plain_paths_are_read_as_they_are() {
        for p in ["/", "/admin", "/admin/x", "/photos/2026/...jpg", "/a-b_c~d/e.png", "/public/"] {
            assert_eq!(views(p), Ok((p.to_string(), None)), "{p}");
        }
    }

    #[test]
    fn the_decoded_reading_is_what_lenient_apps_serve() {
        for (raw, path, decoded) in [
            ("/admin%2Fx", "/admin%2Fx", Some("/admin/x")),
            ("/admin%2fx", "/admin%2fx", Some("/admin/x")),
            ("/admin%5Cx", "/admin%5Cx", Some("/admin/x")),
            ("/admin\\x", "/admin\\x", Some("/admin/x")),
            ("/admin;jsessionid=1/x", "/admin;jsessionid=1/x", Some("/admin/x")),
            ("/admin./x", "/admin./x", Some("/admin/x")),
            ("/admin%20/x", "/admin%20/x", Some("/admin/x")),
            ("//admin", "/admin", None),
            ("/%61dmin", "/admin", None),
            ("/public/a%20b", "/public/a%20b", Some("/public/a b")),
            ("/caf%C3%A9/", "/caf%C3%A9/", Some("/café/")),
            ("/admin/", "/admin/", None),
            ("/admin;x", "/admin;x", Some("/admin")),
        ] {
            assert_eq!(views(raw), Ok((path.to_string(), decoded.map(str::to_string))), "{raw}");
        }
    }

    #[test]
    fn paths_some_app_reads_otherwise_are_refused() {
        for raw in [
            "/public/..%2fadmin/x", "/public/..;/admin/x", "/public/%2e%2e%2fadmin/x", "/public/..%5cadmin/x",
            "/public/../admin", "/public/./x", "/public/%2e/x", "/public/.%2E/x", "/a/..;x/b", "/a/%2e%2e%3b/b",
            "/admin%00/x", "/admin%09/x", "/admin%0a", "/admin%", "/admin%2", "/admin%zz", "/admin%252fx",
            "/admin%252Fx", "/admin%255cx", "/admin%252e%252e/x", "/a%ff", "/public/.. /x", "/public/.../x",
            "/;%5cpublic%2fadmin", "/;%2f%61/admin", "/a;x\\b", "/a;x%2fb",
            "/public/..\\admin", "admin", "",
        ] {
            assert!(path_views(raw).is_err(), "{raw} was not refused: {:?}", views(raw));
        }
    }

    #[test]
    fn hosts_in_normal_form() {
        for (host, want) in [
            ("app.example.com", Ok("app.example.com")),
            ("app.example.com.", Ok("app.example.com")),
            ("APP.Example.COM", Ok("app.example.com")),
            ("bücher.example", Ok("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            ("127.0.0.1", Ok("127.0.0.1")),
            ("app.example.com..", Err(())),
            ("", Err(())),
            (".", Err(())),
            ("a b", Err(())),
        ] {
            assert_eq!(normalize_host(host).map(Cow::into_owned).map_err(|_| ()), want.map(str::to_string), "{host}");
        }
    }

    #[test]
    fn methods_are_tokens() {
        for (m, want) in [("GET", Some("GET")), ("m-search", Some("M-SEARCH")), ("VERSION-CONTROL", Some("VERSION-CONTROL"))] {
            assert_eq!(normalize_method(m).ok().as_deref(), want, "{m}");
        }
        for m in ["", "GE T", "GET,POST", "G\u{e9}T", "(GET)", "GET/1"] {
            assert!(normalize_method(m).is_err(), "{m}");
        }
    }
}
