//! Property tests for every parser and decision on the request path: what
//! a hostile browser, proxy header or identity provider can feed portcullis
//! must end as "signed out" or a clear error, never as a panic, an open
//! redirect or a smuggled header.
//!
//! Each generator mixes arbitrary input with input built from the pieces
//! that real attacks are made of, so the interesting cases come up often.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis::config::HeaderNames;
use portcullis::headers::{IdentityHeaders, MAX_VALUE_LEN, sanitize};
use portcullis::identity::{Identity, IdentityParts};
use portcullis::redirect::Redirects;
use portcullis::request::{Flavor, Reported, original_url};
use portcullis::session::cookie::{MAX_SEALED_LEN, Purpose, Sealer};
use proptest::prelude::*;
use proptest::sample::select;
use url::Url;

// ---------------------------------------------------------------- helpers

/// Strings made of `pieces`, `min..max` of them.
fn joined(pieces: &'static [&'static str], min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(select(pieces), min..max).prop_map(|v| v.concat())
}

/// A header value as hyper would hand it over: any bytes but those HTTP
/// forbids in a value (CR, LF, NUL and the other controls but tab).
fn header_value(bytes: Vec<u8>) -> HeaderValue {
    let kept: Vec<u8> = bytes.into_iter().filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)).collect();
    HeaderValue::from_bytes(&kept).expect("only bytes HTTP allows in a value are kept")
}

// ------------------------------------------------------------- cookies

const KEY: [u8; 32] = [0x42; 32];
const OLD_KEY: [u8; 32] = [0x17; 32];

fn sealer() -> Sealer {
    Sealer::new(&[KEY, OLD_KEY])
}

const B64URL: &[&str] = &[
    "A", "B", "Q", "g", "w", "z", "0", "9", "-", "_", "AAAA", "AQ", "AQAA", "=", "+", "/", " ", "\t", "%",
];

/// Text a browser (or an attacker) could put in the cookie.
fn cookie_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,200}",
        joined(B64URL, 0, 80),
        // Long values, around the length limit.
        ("[A-Za-z0-9_-]{1,8}", 4000usize..4200).prop_map(|(s, n)| s.repeat(n / s.len() + 1)[..n].to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any text is "no cookie" (a random value that opens would be a forged
    /// AES-GCM tag), never a panic.
    #[test]
    fn cookie_garbage_never_opens(text in cookie_text()) {
        let s = sealer();
        prop_assert!(s.open(Purpose::Session, &text).is_none());
        prop_assert!(s.open(Purpose::Login, &text).is_none());
    }

    /// Well-formed base64url with the right version byte and any body
    /// still does not open.
    #[test]
    fn cookie_structured_garbage_never_opens(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut raw = vec![1u8];
        raw.extend_from_slice(&body);
        let s = sealer();
        prop_assert!(s.open(Purpose::Session, &URL_SAFE_NO_PAD.encode(&raw)).is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A sealed value opens to exactly its payload, only for its purpose;
    /// one sealed with the older key opens and is flagged for re-sealing.
    #[test]
    fn cookie_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = sealer();
        let sealed = s.seal(Purpose::Session, &payload);
        prop_assert!(sealed.len() <= MAX_SEALED_LEN);
        let opened = s.open(Purpose::Session, &sealed).expect("a fresh value opens");
        prop_assert_eq!(&opened.payload, &payload);
        prop_assert!(!opened.stale_key);
        prop_assert!(s.open(Purpose::Login, &sealed).is_none());

        let old = Sealer::new(&[OLD_KEY]).seal(Purpose::Session, &payload);
        let opened = s.open(Purpose::Session, &old).expect("a value sealed with the older key opens");
        prop_assert_eq!(&opened.payload, &payload);
        prop_assert!(opened.stale_key);
        prop_assert!(Sealer::new(&[KEY]).open(Purpose::Session, &old).is_none());
    }

    /// A sealed value with any one byte changed (to any other ASCII byte:
    /// cookie headers that are not text never reach `open`) does not open.
    #[test]
    fn cookie_with_one_byte_changed_never_opens(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        to in 0u8..0x80,
    ) {
        let s = sealer();
        let sealed = s.seal(Purpose::Session, &payload);
        let mut bytes = sealed.into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(s.open(Purpose::Session, &tampered).is_none(), "{:?} opened", tampered);
    }

    /// The same with a character inserted or removed anywhere.
    #[test]
    fn cookie_with_a_character_added_or_removed_never_opens(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        add in proptest::option::of(select(&['A', 'g', '-', '_', '0', '=', 'é'][..])),
    ) {
        let s = sealer();
        let mut sealed = s.seal(Purpose::Session, &payload);
        let i = at.index(sealed.len());
        match add {
            Some(c) => sealed.insert(i, c),
            None => {
                sealed.remove(i);
            }
        }
        prop_assert!(s.open(Purpose::Session, &sealed).is_none(), "{:?} opened", sealed);
    }
}

// ------------------------------------------------------------ redirects

const ALLOWED: &[&str] = &["example.com", ".apps.example.org"];

fn redirects() -> Redirects {
    Redirects::new(ALLOWED.iter().map(|s| s.to_string()).collect())
}

fn allowed_by_config(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host == "example.com" || host == "apps.example.org" || host.ends_with(".apps.example.org")
}

/// The pieces open-redirect payloads are made of.
const URL_PIECES: &[&str] = &[
    "https://", "http://", "HTTPS://", "hTTp://", "https:", "https:/", "ftp://", "javascript:", "JavaScript:",
    "data:", "//", "///", "/", "\\", "\\\\", "/\\", "@", ":", "?", "#", ".", "..", "%", "%0d%0a", "%0D%0A",
    "%00", "%09", "%2f", "%2F", "%5c", "%5C", "%40", "%2e", "%252f", "%23", "%3f", "\r\n", "\t", " ", "\u{0}",
    "\u{85}", "\u{2028}", "\u{3002}", "\u{ff0e}", "\u{2215}", "\u{ff0f}", "example.com", "EXAMPLE.COM",
    "example.com.", "apps.example.org", "photos.apps.example.org", "evil.com", "example.com.evil.com",
    "evilexample.com", "evilapps.example.org", "example.com%2f.evil.com", "exampIe.com", "\u{435}xample.com",
    "\u{ff45}\u{ff58}\u{ff41}\u{ff4d}\u{ff50}\u{ff4c}\u{ff45}.com", "xn--xample-2of.com", "b\u{fc}cher.example",
    "127.0.0.1", "0x7f.1", "[::1]", "[::ffff:127.0.0.1]", ":443", ":8080", ":0", ":99999", ":-1",
    "user:pw@", "user@", ":@", "example.com@", "alice:secret@", "photos", "album/1", "?rd=", "&x=1",
    "#frag", "\u{1F600}", "\u{e9}",
];

/// Return URLs: arbitrary text, piece soup, and piece soup behind a
/// plausible beginning so that more of it gets past the first checks.
fn return_url() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        joined(URL_PIECES, 1, 12),
        (select(&["https://", "http://", "/", "https://example.com", "https://photos.apps.example.org"][..]), joined(URL_PIECES, 0, 8))
            .prop_map(|(a, b)| format!("{a}{b}")),
        (select(&["https://", "http://"][..]), joined(URL_PIECES, 0, 4), select(&["example.com", "apps.example.org", "evil.com"][..]), joined(URL_PIECES, 0, 4))
            .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}")),
    ]
}

/// What validate promises about a URL it returned.
fn check_accepted(input: &str, out: &Url, base: Option<&Url>) -> Result<(), TestCaseError> {
    // Re-parsing what we send in `Location` gives the same URL...
    let reparsed = Url::parse(out.as_str()).map_err(|e| TestCaseError::fail(format!("{input:?} -> {out} does not re-parse: {e}")))?;
    prop_assert_eq!(&reparsed, out);
    // ...an http(s) URL without credentials, on an allowed host.
    prop_assert!(reparsed.scheme() == "http" || reparsed.scheme() == "https", "{:?} -> {}", input, out);
    prop_assert!(reparsed.username().is_empty() && reparsed.password().is_none(), "{:?} -> {}", input, out);
    let host = reparsed.host_str().unwrap_or("");
    prop_assert!(allowed_by_config(host), "{:?} -> {} (host {:?})", input, out, host);
    // Nothing that could end the Location header.
    prop_assert!(!out.as_str().bytes().any(|b| b < 0x20 || b == 0x7f), "{:?} -> {:?}", input, out.as_str());
    prop_assert!(HeaderValue::from_str(out.as_str()).is_ok());
    prop_assert!(out.as_str().len() <= portcullis::redirect::MAX_LEN, "{:?} -> {} bytes", input, out.as_str().len());
    // A browser, which parses by the same WHATWG rules, goes to the same host.
    let browser = if input.starts_with('/') { base.unwrap().join(input) } else { Url::parse(input) };
    let browser = browser.map_err(|e| TestCaseError::fail(format!("{input:?} accepted but a browser cannot parse it: {e}")))?;
    prop_assert_eq!(browser.host_str(), out.host_str(), "{:?}", input);
    prop_assert_eq!(browser.port_or_known_default(), out.port_or_known_default(), "{:?}", input);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// No generated return URL leads off the allowed hosts.
    #[test]
    fn redirect_never_leaves_the_allowed_hosts(rd in return_url(), base in select(&["https://example.com/", "http://photos.apps.example.org:8080/a/b", "https://evil.com/"][..]), with_base in any::<bool>()) {
        let base = Url::parse(base).unwrap();
        let base = with_base.then_some(&base);
        if let Ok(out) = redirects().validate(&rd, base) {
            check_accepted(&rd, &out, base)?;
            if rd.starts_with('/') {
                prop_assert!(allowed_by_config(base.unwrap().host_str().unwrap()), "{:?} relative to a foreign base", rd);
            }
        }
    }

    /// And it is not merely refusing everything: plain URLs on allowed
    /// hosts, and plain paths, are accepted as they are.
    #[test]
    fn redirect_accepts_plain_urls_on_allowed_hosts(
        scheme in select(&["http", "https"][..]),
        host in select(&["example.com", "EXAMPLE.com", "apps.example.org", "photos.apps.example.org", "a.b.apps.example.org"][..]),
        port in proptest::option::of(1u16..),
        path in "(/[A-Za-z0-9._~!$&'()*+,;=:@-]{0,12}){0,4}",
        query in proptest::option::of("[A-Za-z0-9=&%_.-]{0,20}"),
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let rd = format!("{scheme}://{host}{port}{path}{query}");
        prop_assume!(!rd.to_ascii_lowercase().contains("%0") && !rd.to_ascii_lowercase().contains("%5c"));
        let out = redirects().validate(&rd, None).map_err(|e| TestCaseError::fail(format!("{rd:?} refused: {e}")))?;
        check_accepted(&rd, &out, None)?;
        prop_assert_eq!(out.host_str().unwrap(), host.to_ascii_lowercase());

        let relative = format!("/{}{query}", path.trim_start_matches('/'));
        prop_assume!(!relative.starts_with("//"));
        let base = Url::parse("https://example.com/").unwrap();
        let out = redirects().validate(&relative, Some(&base)).map_err(|e| TestCaseError::fail(format!("{relative:?} refused: {e}")))?;
        check_accepted(&relative, &out, Some(&base))?;
        prop_assert_eq!(out.host_str(), Some("example.com"));
    }
}

/// Long return URLs of characters that percent-encoding expands.
fn long_return_url() -> impl Strategy<Value = String> {
    (
        select(&["/", "https://example.com/", "https://photos.apps.example.org/"][..]),
        proptest::collection::vec(select(&["a", "<", "\"", "{", "`", "\u{e9}", "\u{1F600}", "%", "?", "#", "/"][..]), 300..2100),
    )
        .prop_map(|(start, pieces)| format!("{start}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every accepted return URL fits in the login cookie that carries it
    /// through the provider, so the callback can open it again.
    #[test]
    fn accepted_return_urls_fit_in_the_login_cookie(rd in long_return_url()) {
        let base = Url::parse("https://example.com/").unwrap();
        let Ok(out) = redirects().validate(&rd, Some(&base)) else { return Ok(()) };
        let attempt = portcullis::oidc::LoginAttempt {
            // As long as they get: 32 random bytes in base64url, a 128-character PKCE verifier.
            state: "s".repeat(43),
            nonce: "n".repeat(43),
            verifier: "v".repeat(128),
            rd: out.to_string(),
            created_at: u64::MAX,
        };
        let payload = serde_json::to_vec(&attempt).unwrap();
        let sealed = sealer().seal(Purpose::Login, &payload);
        prop_assert!(sealed.len() <= MAX_SEALED_LEN, "{} bytes of return URL make a {} byte cookie", out.as_str().len(), sealed.len());
        prop_assert_eq!(sealer().open(Purpose::Login, &sealed).map(|o| o.payload), Some(payload));
    }
}

// -------------------------------------------------------- original URL

const FORWARDED_PIECES: &[&str] = &[
    "http", "https", "HTTPS", "ftp", "javascript", ",", ", ", " ", "\t", "example.com", "EXAMPLE.com",
    "photos.example.com", "evil.com", ":", ":8080", ":0", ":99999", "/", "//", "\\", "@", "?", "#", "%2f", "%40",
    "%00", "[::1]", "[", "]", "127.0.0.1", "user:pw@", "https://", "http://", "/path", "/a?b=c", "#x", "..",
    "\u{e9}", "\u{3002}", "xn--", "-", "..", "/..", "/.", "%2e", "%2E", "/admin", "\\", "%5c", "%2f", "%20", " ", "\t",
];

fn header_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::weighted(
        0.8,
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            joined(FORWARDED_PIECES, 0, 8).prop_map(String::into_bytes),
        ],
    )
}

fn original_url_header() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::weighted(
        0.5,
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            joined(URL_PIECES, 0, 8).prop_map(String::into_bytes),
            (select(&["https://", "http://", "ftp://", "//", "HTTPS://", "file:///"][..]), joined(FORWARDED_PIECES, 0, 6))
                .prop_map(|(a, b)| format!("{a}{b}").into_bytes()),
        ],
    )
}

/// `scheme://host/` when `host` is nothing but a host and an optional
/// port: no credentials, path, query or fragment hiding in it.
fn bare_authority(scheme: &str, host: &str) -> Option<Url> {
    let u = Url::parse(&format!("{scheme}://{host}/")).ok()?;
    (u.host_str().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none())
    .then_some(u)
}

/// A request target's path (up to `?` or `#`), percent-decoded: what an
/// app routes on, whatever the encoding.
fn decoded_path(target: &str) -> Vec<u8> {
    let path = target.split(['?', '#']).next().unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    // An empty path is the root.
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Headers a proxy (or a client the proxy passes through) sends make an
    /// http(s) URL with a host, or a clear error; never a panic. The host is
    /// the one the headers name, never one smuggled in through the path.
    #[test]
    fn original_url_is_http_with_the_named_host(
        x_original_url in original_url_header(),
        proto in header_bytes(),
        fwd_host in header_bytes(),
        fwd_uri in header_bytes(),
        host in header_bytes(),
        nginx in any::<bool>(),
        default_scheme in select(&["http", "https"][..]),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-original-url", &x_original_url),
            ("x-forwarded-proto", &proto),
            ("x-forwarded-host", &fwd_host),
            ("x-forwarded-uri", &fwd_uri),
            ("host", &host),
        ] {
            if let Some(v) = value {
                headers.insert(HeaderName::from_static(name), header_value(v.clone()));
            }
        }
        let flavor = if nginx { Flavor::Nginx } else { Flavor::Forward };
        let Ok(original) = original_url(&Reported::read(&headers), flavor, default_scheme) else { return Ok(()) };
        let url = original.url();
        prop_assert!(url.is_ok(), "accepted, but the whole URL does not parse: {:?}", original);
        let url = url.unwrap();
        // Host and path read in place are the parser's.
        prop_assert_eq!(original.host(), url.host_str().unwrap(), "{:?}", original);
        prop_assert_eq!(original.path(), url.path(), "{:?}", original);
        prop_assert!(url.scheme() == "http" || url.scheme() == "https", "{}", url);
        prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{}", url);

        let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().trim().to_string());
        if nginx && headers.contains_key("x-original-url") {
            let original = text("x-original-url").unwrap();
            prop_assert_eq!(&url, &Url::parse(&original).unwrap());
            // Policy judges the path the app is asked for.
            // (The authority starts after the scheme's colon and any slashes.)
            let raw = original.split_once(':').unwrap().1.trim_start_matches('/');
            let raw_path = raw.find(['/', '?', '#']).map_or("/", |i| &raw[i..]);
            prop_assert_eq!(decoded_path(url.path()), decoded_path(raw_path), "X-Original-URL {:?}", original);
        } else {
            let named = match text("x-forwarded-host") {
                Some(h) => h.split(',').next().unwrap().trim().to_string(),
                None => text("host").unwrap(),
            };
            // The host (and port) are exactly the named host's...
            let authority = bare_authority(url.scheme(), &named);
            prop_assert!(authority.is_some(), "accepted host {:?} that is more than a host: {}", named, url);
            let authority = authority.unwrap();
            prop_assert_eq!(url.host_str(), authority.host_str(), "host header {:?}", named);
            prop_assert_eq!(url.port(), authority.port(), "host header {:?}", named);
            // ...and path and query are X-Forwarded-Uri's, so policy rules see the path asked for.
            let uri = text("x-forwarded-uri").unwrap_or_else(|| "/".into());
            let expected = authority.join(&uri).unwrap();
            prop_assert_eq!(url.path(), expected.path(), "uri {:?}", uri);
            prop_assert_eq!(url.query(), expected.query(), "uri {:?}", uri);
            prop_assert_eq!(decoded_path(url.path()), decoded_path(&uri), "uri {:?}", uri);
        }
    }
}

// ------------------------------------------------------- header values

const HEADER_PIECES: &[&str] = &[
    "alice", "\r\n", "\r", "\n", "\0", "\t", " ", "\u{7f}", "\u{1b}[31m", "\u{85}", "\u{2028}", "\u{feff}",
    "X-Admin: yes", "Remote-User: admin", ":", ",", "\u{e9}", "\u{1F600}", "%0d%0a", "\\r\\n",
];

fn claim_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        joined(HEADER_PIECES, 0, 12),
        // Longer than a header value may be.
        (select(HEADER_PIECES), 1000usize..2000).prop_map(|(p, n)| p.repeat(n)),
    ]
}

fn assert_header_safe(v: &HeaderValue) -> Result<(), TestCaseError> {
    let bytes = v.as_bytes();
    prop_assert!(!bytes.iter().any(|b| *b < 0x20 || *b == 0x7f), "{:?}", v);
    prop_assert!(bytes.len() <= MAX_VALUE_LEN);
    prop_assert!(HeaderValue::from_bytes(bytes).is_ok());
    // What an upstream would read: still valid UTF-8, never a cut character.
    prop_assert!(std::str::from_utf8(bytes).is_ok(), "{:?}", v);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sanitized_values_carry_no_control_bytes(text in claim_text()) {
        let v = sanitize(&text);
        assert_header_safe(&v)?;
        // Ordinary text passes unchanged.
        if text.len() <= MAX_VALUE_LEN && text.chars().all(|c| c.is_ascii_graphic() || c == ' ') && text.trim() == text {
            prop_assert_eq!(v.as_bytes(), text.as_bytes());
        }
    }
}

fn header_names() -> impl Strategy<Value = HeaderNames> {
    prop_oneof![
        Just(HeaderNames::default()),
        select(&[",", ";", "|", ", ", " "][..]).prop_map(|sep| HeaderNames {
            user: "X-Forwarded-User".into(),
            email: "X-Forwarded-Email".into(),
            name: "X-Forwarded-Preferred-Username".into(),
            groups: "X-Forwarded-Groups".into(),
            role: "X-Auth-Role".into(),
            subject: "X-Auth-Subject".into(),
            groups_separator: sep.into(),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// No claim value can add a header to portcullis's answer: exactly the
    /// six configured names come out, each once, each safe.
    #[test]
    fn identity_headers_are_exactly_the_configured_six(
        names in header_names(),
        user in claim_text(),
        email in proptest::option::of(claim_text()),
        name in proptest::option::of(claim_text()),
        groups in proptest::collection::vec(claim_text(), 0..6),
        header_groups in proptest::option::of(proptest::collection::vec(claim_text(), 0..6)),
        role in claim_text(),
        person in claim_text(),
    ) {
        let headers = IdentityHeaders::new(&names).unwrap();
        let identity = Identity::from(IdentityParts { user, email, name, groups: groups.clone(), header_groups: header_groups.clone(), role, person, ..Default::default() });
        // The groups header carries the display names when there are any.
        let groups = header_groups.unwrap_or(groups);
        let mut out = HeaderMap::new();
        headers.write(&identity, &mut out);
        let expected: Vec<String> = [&names.user, &names.email, &names.name, &names.groups, &names.role, &names.subject]
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        prop_assert_eq!(out.len(), 6);
        prop_assert_eq!(out.keys_len(), 6);
        for (n, v) in &out {
            prop_assert!(expected.contains(&n.as_str().to_string()), "unexpected header {}", n);
            assert_header_safe(v)?;
        }
        // As the upstream reads the headers on the wire: six lines.
        let wire: String = out.iter().map(|(n, v)| format!("{}: {}\r\n", n, String::from_utf8_lossy(v.as_bytes()))).collect();
        prop_assert_eq!(wire.matches("\r\n").count(), 6);
        prop_assert_eq!(wire.matches('\n').count(), 6);
        // Group names never add or lose a group for an upstream splitting on the separator
        // (as long as they fit and are plain text).
        let plain = groups.iter().all(|g| !g.is_empty() && g.trim() == g && g.chars().all(|c| c.is_ascii_graphic()))
            && groups.iter().map(|g| g.len() + names.groups_separator.len()).sum::<usize>() < MAX_VALUE_LEN;
        if plain && !groups.is_empty() && names.groups_separator.trim() == names.groups_separator {
            let sent = out.get(names.groups.to_ascii_lowercase().as_str()).unwrap().to_str().unwrap();
            prop_assert_eq!(sent.split(names.groups_separator.as_str()).count(), groups.len(), "{:?} -> {:?}", groups, sent);
        }
    }
}

// ---------------------------------------------------------- claim paths

use portcullis::claims::{Claims, lookup, text, values};
use serde_json::{Value, json};

/// Claim keys: plain, with dots, URLs, Zitadel's URNs, unicode.
fn claim_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,8}",
        select(&["groups", "roles", "realm_access", "resource_access", "my-client", "https://example.com/groups", "urn:zitadel:iam:org:project:roles", "a.b", "", ".", "é"][..]).prop_map(str::to_string),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((claim_key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn claims_map() -> impl Strategy<Value = Claims> {
    proptest::collection::vec((claim_key(), json_value()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// `{a: {b: {c: value}}}` for the path `a.b.c`.
fn nest(segments: &[String], value: Value) -> Value {
    segments.iter().rev().fold(value, |v, s| json!({ s.clone(): v }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any claims and any path: a value or nothing, never a panic; what
    /// `text` and `values` read is what `lookup` found.
    #[test]
    fn claim_lookup_never_panics(claims in claims_map(), path in prop_oneof![claim_key(), joined(&["a", "b", ".", "..", "groups", "é", "/", "realm_access", "roles"], 0, 10)]) {
        let found = lookup(&claims, &path);
        if claims.contains_key(&path) {
            prop_assert_eq!(found, claims.get(&path), "a top-level key of that exact name wins");
        }
        match found {
            Some(Value::String(s)) => prop_assert_eq!(text(&claims, &path), Some(s.clone())),
            Some(Value::Number(n)) => prop_assert_eq!(text(&claims, &path), Some(n.to_string())),
            _ => prop_assert_eq!(text(&claims, &path), None),
        }
        let listed = values(found);
        if let Some(Value::Array(items)) = found {
            prop_assert!(listed.len() <= items.len());
        }
    }

    /// A value nested under dot-free keys is found by their dotted path,
    /// whatever else the claims hold beside it.
    #[test]
    fn claim_path_finds_nested_values(
        segments in proptest::collection::vec("[A-Za-z0-9_:/-]{1,10}", 1..5),
        value in json_value(),
        noise in claims_map(),
    ) {
        let path = segments.join(".");
        let mut claims = noise;
        // The noise must not hold a longer dotted key on the way (that one would win).
        claims.retain(|k, _| !path.starts_with(k.as_str()) && !k.starts_with(&segments[0]));
        claims.insert(segments[0].clone(), nest(&segments[1..], value.clone()));
        prop_assert_eq!(lookup(&claims, &path), Some(&value));
        // And a key that itself contains the dots is found as one key.
        let flat: Claims = [(path.clone(), value.clone())].into_iter().collect();
        prop_assert_eq!(lookup(&flat, &path), Some(&value));
    }
}

// --------------------------------------------------- name normalisation

use portcullis::identity::Mapper;
use portcullis::names::{GroupPaths, normalize, normalize_group};

/// Names as people write them: letters (some non-ASCII), digits, inner
/// spaces, dashes, Keycloak paths, GUIDs. Never surrounding white space:
/// a token value with it cannot be passed on unchanged, so the mapper
/// ignores it (the configuration side may have it: it is trimmed).
fn group_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9 _.-]{0,12}[A-Za-z0-9]",
        "(/[A-Za-z0-9]([A-Za-z0-9 _-]{0,6}[A-Za-z0-9])?){1,3}",
        "[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}",
        select(&["Ärzte", "ÉQUIPE", "Straße", "family-members", "/family", "/family/kids", "İstanbul", "ΟΔΟΣ"][..]).prop_map(str::to_string),
    ]
}

/// The same name as an administrator might write it in the configuration:
/// other ASCII case, surrounding spaces.
fn written_differently(name: &str, flips: &[bool], pad: (usize, usize)) -> String {
    let flipped: String = name
        .chars()
        .zip(flips.iter().cycle())
        .map(|(c, flip)| if *flip && c.is_ascii_lowercase() { c.to_ascii_uppercase() } else if *flip { c.to_ascii_lowercase() } else { c })
        .collect();
    format!("{}{flipped}{}", " ".repeat(pad.0), " ".repeat(pad.1))
}

fn mapper(required_groups: Vec<String>, paths: GroupPaths) -> Result<Mapper, String> {
    let mut config = portcullis::Config::from_toml_str(
        "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .map_err(|e| e.to_string())?;
    config.identity.required_groups = required_groups;
    config.identity.group_paths = paths;
    Mapper::new(&config.identity, &config.role_map).map_err(|e| e.to_string())
}

fn signs_in(m: &Mapper, groups: &[&str]) -> bool {
    let claims: Claims = json!({"sub": "u-1", "preferred_username": "alice", "groups": groups}).as_object().unwrap().clone();
    m.map(&claims).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Normalising twice changes nothing.
    #[test]
    fn normalisation_is_idempotent(name in prop_oneof![any::<String>(), group_name(), joined(&["/", " ", "\t", "A", "é", "İ", "Σ", "ς", "ß", "/ "], 0, 10)]) {
        let once = normalize(&name);
        prop_assert_eq!(normalize(&once), once.clone());
        for paths in [GroupPaths::Full, GroupPaths::Leaf] {
            let once = normalize_group(&name, paths);
            prop_assert_eq!(normalize_group(&once, paths), once.clone(), "{:?} ({:?})", name, paths);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A group written in the configuration in another case, or padded with
    /// spaces, admits the member whose token carries it; a group whose
    /// normal form differs does not.
    #[test]
    fn config_and_token_sides_agree(
        name in group_name(),
        other in group_name(),
        flips in proptest::collection::vec(any::<bool>(), 1..8),
        pad in (0usize..3, 0usize..3),
        leaf in any::<bool>(),
    ) {
        let paths = if leaf { GroupPaths::Leaf } else { GroupPaths::Full };
        let configured = written_differently(&name, &flips, pad);
        let m = mapper(vec![configured.clone()], paths).map_err(TestCaseError::fail)?;
        prop_assert!(signs_in(&m, &[&name]), "token {:?} refused by required_groups [{:?}] ({:?})", name, configured, paths);
        let m = mapper(vec![other.clone()], paths).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            signs_in(&m, &[&name]),
            normalize_group(&other, paths) == normalize_group(&name, paths),
            "token {:?}, required_groups [{:?}] ({:?})", name, other, paths
        );
        // Keycloak: a top-level group's path matches its plain name, and
        // (leaf mode) a nested group matches its leaf name.
        if !name.contains('/') {
            let m = mapper(vec![name.clone()], paths).map_err(TestCaseError::fail)?;
            prop_assert!(signs_in(&m, &[&format!("/{name}")]), "/{} ({:?})", name, paths);
            prop_assert_eq!(signs_in(&m, &[&format!("/parent/{name}")]), leaf, "/parent/{} ({:?})", name, paths);
        }
    }
}

// ------------------------------------------------------- request view

/// The pieces paths that slip past forward-auth services are made of.
const PATH_PIECES: &[&str] = &[
    "/", "/", "/", "admin", "ADMIN", "public", "x", "photos", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", ";",
    ";x", "%3b", "%00", "%09", "%20", " ", "%25", "%252f", "%", "%zz", "%61", "%41", "#", "?", "=", "..;", "//", "~",
    "\u{e9}", "%c3%a9", "%ff",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// The shipped policy, asked through the request view, admits only what
    /// every app reading of the path admits: whenever portcullis would let
    /// a request through (a bypass for nobody; an allow for a signed-in
    /// non-admin), no way an app reads the path names a resource the policy
    /// refuses that person. And a refusal is a clear 400, never a panic.
    #[test]
    fn what_the_view_admits_every_reading_admits(path in joined(PATH_PIECES, 1, 10).prop_map(|p| format!("/{p}"))) {
        use common::readings::{Who, admitted, readings};
        use portcullis::view::RequestView;
        let target = path.split(['?', '#']).next().unwrap().to_string();
        let Ok(view) = RequestView::new("app.example.com", &target, Some("GET")) else { return Ok(()) };
        let policy = shipped_policy();
        let alice: Identity = IdentityParts {
            user: "alice".into(),
            person: "alice".into(),
            groups: vec!["family".into(), "photos".into()],
            subject: "alice".into(),
            ..Default::default()
        }
        .into();
        use portcullis::policy::Verdict;
        let matched = policy.rule_for(&view);
        let bypass = matches!(policy.decide(matched, &view, None, &mut Vec::new()), Verdict::Bypass { .. });
        let claims = portcullis::claims::StoredClaims::default();
        let allowed = matches!(
            policy.decide(matched, &view, Some((&alice, &claims)), &mut Vec::new()),
            Verdict::Allow { .. } | Verdict::Bypass { .. }
        );
        for r in readings(&target) {
            if bypass {
                prop_assert!(admitted(&r, Who::Nobody), "{} bypassed, but an app may read it as {}", target, r);
            }
            if allowed {
                prop_assert!(admitted(&r, Who::Alice), "{} allowed to a non-admin, but an app may read it as {}", target, r);
            }
        }
    }
}

fn shipped_policy() -> portcullis::policy::Policy {
    static POLICY: std::sync::OnceLock<portcullis::policy::Policy> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/portcullis.toml")).unwrap();
            let config = portcullis::Config::from_toml_str(&text).unwrap();
            portcullis::rules::Rules::new(config).unwrap().policy
        })
        .clone()
}

// ------------------------------------------------------- policy index

const RULE_HOSTS: &[Option<&str>] = &[
    None,
    None,
    Some("a.example.com"),
    Some("example.com"),
    Some("b.a.example.com"),
    Some("A.Example.COM."),
    Some("*.example.com"),
    Some("*.a.example.com"),
    Some("*.com"),
    Some("*.b.a.example.com"),
    Some("b\u{fc}cher.example"),
];
const RULE_PATHS: &[Option<&str>] = &[
    None, Some("/"), Some("/admin"), Some("/admin/"), Some("/Admin"), Some("/ADMIN/"), Some("/admin/x"), Some("/api"),
    Some("/api/*"), Some("/*.js"), Some("/a?b"), Some("/*admin*"), Some("/x/y/"), Some("/public"), Some("/%61dmin"),
    Some("//admin//x"), Some("/\u{e9}"),
];
const RULE_METHODS: &[&[&str]] = &[&[], &[], &["GET"], &["POST"], &["GET", "head"], &["delete"]];
const REQUEST_HOSTS: &[&str] = &[
    "a.example.com", "example.com", "b.a.example.com", "c.b.a.example.com", "A.EXAMPLE.COM", "x.example.com", "com",
    "other.org", "b\u{fc}cher.example", "B\u{dc}CHER.example", "a.example.com.", "a.example.com:8443",
];
const REQUEST_PATH_PIECES: &[&str] = &[
    "admin", "ADMIN", "Admin", "api", "x", "y", "a", "b", "ab", "aXb", "public", "%61dmin", "%41DMIN", "%2F", "%2f", "/",
    "/", "/", "//", "file.js", ".js", "%20", "\u{e9}", "%c3%a9", "%C3%89", ";x", "..", ".",
];

fn policy_rule() -> impl Strategy<Value = portcullis::policy::PolicyRule> {
    use portcullis::policy::{Action, PolicyRule};
    (select(RULE_HOSTS), select(RULE_PATHS), select(RULE_METHODS), 0..4u8).prop_map(|(host, path, methods, action)| {
        PolicyRule {
            host: host.map(str::to_string),
            path: path.map(str::to_string),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            action: [Action::Bypass, Action::Deny, Action::Allow, Action::Allow][action as usize],
            // An allow with requirements protects; one without lets in.
            groups: if action == 3 { vec!["admins".into()] } else { vec![] },
            roles: vec![],
            app_roles: vec![],
            users: vec![],
            emails: vec![],
            email_domains: vec![],
            expr: None,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// The policy's index by host and path finds the very rule a plain
    /// first-match scan of every rule finds, for any rules (exact,
    /// wildcard and no hosts; prefixes, globs, methods; letting in and
    /// protecting) and any request.
    #[test]
    fn policy_index_finds_the_first_matching_rule(
        rules in proptest::collection::vec(policy_rule(), 0..14),
        host in select(REQUEST_HOSTS),
        path in joined(REQUEST_PATH_PIECES, 0, 6).prop_map(|p| format!("/{p}")),
        method in select(&[None, Some("GET"), Some("POST"), Some("HEAD"), Some("DELETE"), Some("get")][..]),
    ) {
        use portcullis::policy::{DefaultPolicy, Policy};
        use portcullis::view::RequestView;
        let policy = Policy::new(DefaultPolicy::Allow, &rules, GroupPaths::Full).expect("every generated rule is valid");
        let Ok(view) = RequestView::new(host, &path, method) else { return Ok(()) };
        prop_assert_eq!(policy.matching_rule(&view), policy.matching_rule_by_scan(&view), "{:?} {} {} {:?}", method, host, path, rules);
    }
}

// ---------------------------------------------------- identity rule index

/// Names that overlap: the same person in other letter cases, a user name
/// that looks like an email, an email whose domain another rule lists.
const RULE_USERS: &[&str] = &["alice", "Alice", " ALICE ", "bob", "alice@example.com", "dave"];
const RULE_EMAILS: &[&str] = &["alice@example.com", "ALICE@Example.com", "bob@example.com", "carol@other.org", "alice"];
const RULE_GROUPS: &[&str] = &["family", "Family", "guests", "/family", "admins"];
const RULE_DOMAINS: &[&str] = &["example.com", "@Example.COM", "other.org"];
/// Expressions that match, that do not, and one that cannot be evaluated
/// without an email (an error, noted).
const RULE_EXPRS: &[Option<&str>] =
    &[None, None, None, None, Some("true"), Some("user == \"bob\""), Some("claims.email.endsWith(\"@other.org\")")];
const PEOPLE: &[&str] = &["alice", "Alice", "bob", "carol", "alice@example.com", "erin"];
const PEOPLE_EMAILS: &[Option<&str>] =
    &[None, Some("alice@example.com"), Some("Alice@EXAMPLE.com"), Some("bob@example.com"), Some("carol@other.org"), Some("erin@x.org"), Some("alice")];
const PEOPLE_GROUPS: &[&str] = &["family", "FAMILY", "guests", "/family", "others", "admins"];

fn names_from(pool: &'static [&'static str], most: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(select(pool).prop_map(str::to_string), 0..=most)
}

fn identity_rule() -> impl Strategy<Value = portcullis::identity::IdentityRule> {
    (
        names_from(RULE_USERS, 3),
        names_from(RULE_EMAILS, 3),
        names_from(RULE_GROUPS, 2),
        names_from(RULE_DOMAINS, 2),
        select(RULE_EXPRS),
        any::<bool>(),
    )
        .prop_map(|(users, emails, groups, email_domains, expr, role)| {
            // Each rule must set something to match by.
            let nothing = users.is_empty() && emails.is_empty() && groups.is_empty() && email_domains.is_empty() && expr.is_none();
            portcullis::identity::IdentityRule {
                users,
                emails,
                groups,
                email_domains,
                expr: if nothing { Some("true".into()) } else { expr.map(str::to_string) },
                user: "shared".into(),
                role: role.then(|| "viewer".into()),
                ..Default::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The identity rules' index by the users and emails they list picks
    /// the very rule a plain first-match scan of every rule picks, for any
    /// rules (users, emails, groups, email domains and expressions, alone
    /// and together, names in other letter cases) and any person: the same
    /// rule, identity or refusal, role and notes.
    #[test]
    fn identity_index_finds_the_first_matching_rule(
        rules in proptest::collection::vec(identity_rule(), 0..12),
        user in select(PEOPLE),
        email in select(PEOPLE_EMAILS),
        verified in any::<bool>(),
        groups in names_from(PEOPLE_GROUPS, 3),
    ) {
        let mut config = portcullis::Config::from_toml_str(
            "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        // Each rule maps onto a user of its own, so the identity says which.
        config.identity.rules = rules.into_iter().enumerate().map(|(i, r)| portcullis::identity::IdentityRule { user: format!("shared-{i}"), ..r }).collect();
        let m = Mapper::new(&config.identity, &config.role_map).expect("every generated rule is valid");
        let mut claims = json!({"sub": "s-1", "preferred_username": user, "groups": groups});
        if let Some(e) = email {
            claims["email"] = json!(e);
            claims["email_verified"] = json!(verified);
        }
        let claims: Claims = claims.as_object().unwrap().clone();
        let (indexed, scanned) = (m.explain(&claims), m.explain_by_scan(&claims));
        let rules = &config.identity.rules;
        prop_assert_eq!(indexed.rule, scanned.rule, "{:?} {:?} {:?} {:?}", user, email, groups, rules);
        prop_assert_eq!(&indexed.result, &scanned.result);
        prop_assert_eq!(indexed.role_from, scanned.role_from);
        prop_assert_eq!(&indexed.notes, &scanned.notes);
    }
}
