//! Text made safe to send as a header value, whatever it held.
//!
//! This is a leaf: it imports nothing from the rest of portcullis.

use hyper::header::HeaderValue;

/// Longest value portcullis puts in one header; longer values are cut at a
/// character boundary.
pub const MAX_VALUE_LEN: usize = 4096;

/// Turns arbitrary text into a header value: control characters become a
/// space, surrounding white space is trimmed, and the length is bounded.
pub fn sanitize(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len().min(MAX_VALUE_LEN));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_VALUE_LEN {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    // Only visible ASCII, space and UTF-8 bytes (>= 0x80) remain: always valid.
    HeaderValue::from_bytes(trimmed.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

