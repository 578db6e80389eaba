//! The original request's URL from proxy headers: http(s) with exactly the
//! named host and the forwarded path, or a clear error.
#![no_main]

use arbitrary::Arbitrary;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::request::{Flavor, Reported, original_url};
use url::Url;

#[derive(Arbitrary, Debug)]
struct Input {
    x_original_url: Option<Vec<u8>>,
    proto: Option<Vec<u8>>,
    fwd_host: Option<Vec<u8>>,
    fwd_uri: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
    nginx: bool,
    https_default: bool,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-original-url", input.x_original_url),
        ("x-forwarded-proto", input.proto),
        ("x-forwarded-host", input.fwd_host),
        ("x-forwarded-uri", input.fwd_uri),
        ("host", input.host),
    ] {
        // hyper hands over only bytes HTTP allows in a value.
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let flavor = if input.nginx { Flavor::Nginx } else { Flavor::Forward };
    let Ok(original) = original_url(&Reported::read(&headers), flavor, if input.https_default { "https" } else { "http" }) else { return };
    let url = original.url().expect("an accepted original URL parses");
    // Host and path read in place are the parser's.
    assert_eq!(Some(original.host()), url.host_str(), "{original:?}");
    assert_eq!(original.path(), url.path(), "{original:?}");
    assert!(matches!(url.scheme(), "http" | "https"), "{url}");
    assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().trim().to_string());
    if input.nginx && headers.contains_key("x-original-url") {
        let original = text("x-original-url").unwrap();
        assert_eq!(url, Url::parse(&original).unwrap());
        // Policy judges the path the app is asked for.
        let raw = original.split_once(':').unwrap().1.trim_start_matches('/');
        let raw_path = raw.find(['/', '?', '#']).map_or("/", |i| &raw[i..]);
        assert_eq!(decoded_path(url.path()), decoded_path(raw_path), "X-Original-URL {original:?}");
        return;
    }
    let named = match text("x-forwarded-host") {
        Some(h) => h.split(',').next().unwrap().trim().to_string(),
        None => text("host").unwrap(),
    };
    let authority = Url::parse(&format!("{}://{named}/", url.scheme())).expect("the named host parses");
    assert!(
        authority.username().is_empty()
            && authority.password().is_none()
            && authority.path() == "/"
            && authority.query().is_none()
            && authority.fragment().is_none(),
        "accepted host {named:?} that is more than a host: {url}"
    );
    assert_eq!(url.host_str(), authority.host_str());
    assert_eq!(url.port(), authority.port());
    let uri = text("x-forwarded-uri").unwrap_or_else(|| "/".into());
    let expected = authority.join(&uri).unwrap();
    assert_eq!(url.path(), expected.path());
    assert_eq!(url.query(), expected.query());
    assert_eq!(decoded_path(url.path()), decoded_path(&uri), "X-Forwarded-Uri {uri:?}");
});

/// A request target's path, percent-decoded: what an app routes on.
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
    if out.is_empty() {
        out.push(b'/');
    }
    out
}
