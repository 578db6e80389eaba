//! Return URLs (`rd`): whatever is accepted stays on the allowed hosts, as
//! a browser would read it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::redirect::Redirects;
use url::Url;

#[derive(Arbitrary, Debug)]
struct Input {
    rd: String,
    base: u8,
}

const BASES: [&str; 3] = ["https://example.com/", "http://photos.apps.example.org:8080/a/b", "https://evil.com/"];

fn allowed(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host == "example.com" || host == "apps.example.org" || host.ends_with(".apps.example.org")
}

fuzz_target!(|input: Input| {
    let redirects = Redirects::new(vec!["example.com".into(), ".apps.example.org".into()]);
    let base = (input.base as usize % 4 < 3).then(|| Url::parse(BASES[input.base as usize % 4]).unwrap());
    let Ok(out) = redirects.validate(&input.rd, base.as_ref()) else { return };
    let rd = &input.rd;
    let reparsed = Url::parse(out.as_str()).expect("an accepted URL re-parses");
    assert_eq!(reparsed, out);
    assert!(matches!(reparsed.scheme(), "http" | "https"), "{rd:?} -> {out}");
    assert!(reparsed.username().is_empty() && reparsed.password().is_none(), "{rd:?} -> {out}");
    assert!(allowed(reparsed.host_str().unwrap_or("")), "{rd:?} -> {out}");
    assert!(!out.as_str().bytes().any(|b| b < 0x20 || b == 0x7f), "{rd:?} -> {out:?}");
    assert!(out.as_str().len() <= portcullis::redirect::MAX_LEN, "{rd:?} -> {} bytes", out.as_str().len());
    let browser = if rd.starts_with('/') { base.as_ref().unwrap().join(rd) } else { Url::parse(rd) };
    let browser = browser.expect("an accepted URL parses for a browser");
    assert_eq!(browser.host_str(), out.host_str(), "{rd:?}");
    assert_eq!(browser.port_or_known_default(), out.port_or_known_default(), "{rd:?}");
});
