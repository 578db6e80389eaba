//! Claim values into identity headers: no control byte, no extra header.
#![no_main]

use arbitrary::Arbitrary;
use hyper::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::config::HeaderNames;
use portcullis::headers::{IdentityHeaders, MAX_VALUE_LEN, sanitize};
use portcullis::identity::Identity;

#[derive(Arbitrary, Debug)]
struct Input {
    user: String,
    email: Option<String>,
    name: Option<String>,
    groups: Vec<String>,
    role: String,
    person: String,
    separator: u8,
}

fn check(v: &HeaderValue) {
    let bytes = v.as_bytes();
    assert!(!bytes.iter().any(|b| *b < 0x20 || *b == 0x7f), "{v:?}");
    assert!(bytes.len() <= MAX_VALUE_LEN);
    assert!(std::str::from_utf8(bytes).is_ok(), "{v:?}");
}

fuzz_target!(|input: Input| {
    check(&sanitize(&input.user));
    let names = HeaderNames {
        groups_separator: [",", ";", "|", ", ", " "][input.separator as usize % 5].into(),
        ..HeaderNames::default()
    };
    let headers = IdentityHeaders::new(&names).unwrap();
    let identity = Identity {
        user: input.user,
        email: input.email,
        name: input.name,
        groups: input.groups,
        role: input.role,
        person: input.person,
        ..Default::default()
    };
    let mut out = HeaderMap::new();
    headers.write(&identity, &mut out);
    assert_eq!(out.len(), 6);
    for (n, v) in &out {
        assert!(headers.names().contains(&n), "unexpected header {n}");
        check(v);
    }
});
