//! Claim paths over any claims the provider could send: a value or
//! nothing, never a panic, and what is read is what the path names.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::claims::{Claims, lookup, text, values};
use portcullis::names::{GroupPaths, normalize, normalize_group};
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    claims: String,
    path: String,
}

fuzz_target!(|input: Input| {
    for name in [&input.path, &input.claims] {
        let once = normalize(name);
        assert_eq!(normalize(&once), once);
        for paths in [GroupPaths::Full, GroupPaths::Leaf] {
            let once = normalize_group(name, paths);
            assert_eq!(normalize_group(&once, paths), once, "{name:?} ({paths:?})");
        }
    }
    let Ok(claims) = serde_json::from_str::<Claims>(&input.claims) else { return };
    let path = input.path.as_str();
    let found = lookup(&claims, path);
    if claims.contains_key(path) {
        assert_eq!(found, claims.get(path));
    }
    match found {
        Some(Value::String(s)) => assert_eq!(text(&claims, path).as_ref(), Some(s)),
        Some(Value::Number(n)) => assert_eq!(text(&claims, path), Some(n.to_string())),
        _ => assert_eq!(text(&claims, path), None),
    }
    let _ = values(found);
    // A dot-free first segment leading to an object: the rest of the path
    // is looked up inside it when no longer key matches.
    if let Some((first, rest)) = path.split_once('.')
        && let Some(Value::Object(inner)) = claims.get(first)
        && !claims.keys().any(|k| k.len() > first.len() && path.starts_with(k.as_str()))
        && let Some(v) = lookup(inner, rest)
    {
        assert_eq!(found, Some(v));
    }
});
