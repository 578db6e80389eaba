//! Any cookie value a browser sends: it opens only if portcullis sealed it.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis::session::cookie::{MAX_SEALED_LEN, Purpose, Sealer};

fuzz_target!(|data: &[u8]| {
    let sealer = Sealer::new(&[[0x42; 32], [0x17; 32]]);
    // As text (what reaches `open` from a Cookie header).
    let text = String::from_utf8_lossy(data);
    assert!(sealer.open(Purpose::Session, &text).is_none(), "forged session cookie {text:?}");
    assert!(sealer.open(Purpose::Login, &text).is_none(), "forged login cookie {text:?}");
    // As a well-formed envelope: version byte, then any nonce and body.
    let mut raw = vec![1u8];
    raw.extend_from_slice(data);
    let envelope = URL_SAFE_NO_PAD.encode(&raw);
    assert!(sealer.open(Purpose::Session, &envelope).is_none(), "forged envelope {envelope:?}");
    // What portcullis seals opens to exactly that, and only for its purpose,
    // as long as it fits in a cookie (longer values are refused unopened).
    let sealed = sealer.seal(Purpose::Session, data);
    let opened = sealer.open(Purpose::Session, &sealed).map(|o| o.payload);
    if sealed.len() <= MAX_SEALED_LEN {
        assert_eq!(opened.as_deref(), Some(data));
    } else {
        assert_eq!(opened, None);
    }
    assert!(sealer.open(Purpose::Login, &sealed).is_none());
});
