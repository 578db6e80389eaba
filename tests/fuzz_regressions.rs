//! Inputs the fuzzers (fuzz/, scripts/fuzz) once failed on, replayed with
//! the same checks. Each file under tests/fuzz-regressions/TARGET/ is one
//! input as libFuzzer wrote it; see fuzz/RESULTS.md for what each was.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::session::cookie::{MAX_SEALED_LEN, Purpose, Sealer};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

/// fuzz/fuzz_targets/cookie_open.rs, as fixed.
#[test]
fn cookie_open_inputs() {
    let sealer = Sealer::new(&[[0x42; 32], [0x17; 32]]);
    for (name, data) in inputs("cookie_open") {
        let text = String::from_utf8_lossy(&data);
        assert!(sealer.open(Purpose::Session, &text).is_none(), "{name}");
        let mut raw = vec![1u8];
        raw.extend_from_slice(&data);
        assert!(sealer.open(Purpose::Session, &URL_SAFE_NO_PAD.encode(&raw)).is_none(), "{name}");
        // crash-bc3ad29a: a 3078-byte payload seals to more than a cookie
        // may hold; such a value is refused unopened rather than opened.
        let sealed = sealer.seal(Purpose::Session, &data);
        let opened = sealer.open(Purpose::Session, &sealed).map(|o| o.payload);
        if sealed.len() <= MAX_SEALED_LEN {
            assert_eq!(opened.as_deref(), Some(&data[..]), "{name}");
        } else {
            assert_eq!(opened, None, "{name}");
        }
    }
}

/// fuzz/fuzz_targets/original_url.rs found crash-0456d8e1 (kept under
/// tests/fuzz-regressions/original_url/ for `cargo fuzz run`): with
/// `X-Forwarded-Host: b'.` and `X-Forwarded-Uri: /\0`, the URL parse turned
/// the backslash into a slash, so policy judged `//0` while the app was
/// asked for `/\0`. The same rewrite made `/admin\..\public` read as
/// `/public`. Such paths are now a clear error, for both kinds of proxy.
#[test]
fn original_url_refuses_paths_the_parse_would_rewrite() {
    use hyper::header::{HeaderMap, HeaderValue};
    use portcullis::request::{Flavor, Reported, original_url};

    let forwarded = |uri: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("b'."));
        h.insert("x-forwarded-uri", HeaderValue::from_str(uri).unwrap());
        original_url(&Reported::read(&h), Flavor::Forward, "http").map(|o| o.path().to_string())
    };
    let nginx = |uri: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-original-url", HeaderValue::from_str(&format!("https://app.example.com{uri}")).unwrap());
        original_url(&Reported::read(&h), Flavor::Nginx, "http").map(|o| o.path().to_string())
    };
    // A raw `#` too: NGINX passes it on inside the path, where an app may
    // read past it (`/public/x#/../../admin`).
    for bad in ["/\\0", "/admin\\..\\public", "/admin/../public", "/admin/%2e%2e/public", "/admin/%2E./public", "/a/./b", "/ad\tmin", "/admin/..", "/a#../b", "/public/x#/../../admin/x"] {
        assert!(forwarded(bad).is_err(), "X-Forwarded-Uri {bad:?} accepted as {:?}", forwarded(bad));
        assert!(nginx(bad).is_err(), "X-Original-URL path {bad:?} accepted as {:?}", nginx(bad));
    }
    for good in ["/", "/a.b/c..d/.well-known/x", "/...", "/search?q=a\\b&p=../x", "/%2e%2e%2e"] {
        let f = forwarded(good).unwrap_or_else(|e| panic!("X-Forwarded-Uri {good:?}: {e}"));
        let n = nginx(good).unwrap_or_else(|e| panic!("X-Original-URL path {good:?}: {e}"));
        assert_eq!(f, n);
    }
    assert_eq!(forwarded("/a.b/c..d/x").unwrap(), "/a.b/c..d/x");
}
