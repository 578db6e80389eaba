//! Where configuration values come from besides the file: the environment
//! (`PORTCULLIS_…`, secrets taken exactly as written), and load errors
//! described without ever showing a secret's value.

use super::*;

fn env() -> Env {
    // PORTCULLIS_CONFIG names the file; it is not a configuration key.
    Env::prefixed("PORTCULLIS_").split("__").ignore(&["config"])
}

/// The environment as a configuration source. Figment reads a value like
/// TOML (`0123` as the number 123, `1.50` as 1.5, `true` as a boolean),
/// which would change a secret; a secret key's value is taken as the text
/// it is (`session.keys` and `session.redis_url` may also be lists: `[a, b]`).
pub(super) fn env_provider() -> EnvProvider {
    EnvProvider(env())
}

pub(super) struct EnvProvider(pub(super) Env);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};
        fn merge(into: &mut Dict, from: Dict) {
            for (k, v) in from {
                match (into.get_mut(&k), v) {
                    (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge(a, b),
                    (_, v) => {
                        into.insert(k, v);
                    }
                }
            }
        }
        let mut dict = Dict::new();
        for (key, text) in self.0.iter() {
            // `session.keys` and `session.redis_url` may be lists.
            let list = ["keys", "redis_url"].iter().any(|k| key.as_str().rsplit('.').next() == Some(*k))
                && text.trim_start().starts_with('[');
            let raw = secret_path(key.as_str().split('.')) && !list;
            let value = if raw { Value::from(text) } else { text.parse().expect("infallible") };
            if let Value::Dict(_, nested) = figment::util::nest(key.as_str(), value) {
                merge(&mut dict, nested);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// True when a key path leads to a secret (or an upstream credential):
/// its value is taken as written and never shown in an error.
pub(super) fn secret_path<'a>(mut path: impl Iterator<Item = &'a str>) -> bool {
    let mut first = true;
    path.any(|segment| {
        let s = segment.to_ascii_lowercase();
        let upstream = std::mem::take(&mut first) && s == "upstream_headers";
        upstream
            || !s.ends_with("_file")
                && (s == "keys" || s == "redis_url" || s.contains("secret") || s.contains("password") || s.contains("private_key"))
    })
}

pub(super) fn describe_figment_error(e: figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e {
        let key = if err.path.is_empty() { String::new() } else { format!("key `{}`: ", err.path.join(".")) };
        let source = match &err.metadata {
            Some(md) => match &md.source {
                Some(src) => format!(" (from {src})"),
                None => format!(" (from {})", md.name),
            },
            None => String::new(),
        };
        let kind = if secret_path(err.path.iter().map(String::as_str)) {
            describe_without_value(&err.kind, err.path.first().is_some_and(|p| p == "upstream_headers"))
        } else {
            without_source_lines(&err.kind.to_string())
        };
        parts.push(format!("{key}{kind}{source}"));
    }
    parts.join("; ")
}

/// What is wrong with a secret key's value, without the value.
fn describe_without_value(kind: &figment::error::Kind, upstream: bool) -> String {
    use figment::error::{Actual, Kind};
    let what = |a: &Actual| match a {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "a number",
        Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another type",
    };
    let hint = if upstream {
        "; write { file = \"/path/to/it\" } or { env = \"VARIABLE\" }: a credential's value is never written in the configuration"
    } else {
        ""
    };
    let text = match kind {
        Kind::InvalidType(actual, expected) => format!("invalid type: found {}, expected {expected}", what(actual)),
        Kind::InvalidValue(actual, expected) => format!("invalid value: found {}, expected {expected}", what(actual)),
        Kind::UnknownVariant(_, expected) if upstream => format!("expected a table with one of {}", expected.join(", ")),
        Kind::UnknownVariant(..) => "unknown variant".to_string(),
        Kind::InvalidLength(..) | Kind::UnknownField(..) | Kind::MissingField(_) | Kind::DuplicateField(_) => kind.to_string(),
        // Messages that name what was expected, never the value given:
        // this module's own and serde's for untagged enums.
        Kind::Message(m) if m.starts_with("expected ") => m.clone(),
        Kind::Message(m) if m.starts_with("data did not match any variant") => "expected a string or a list of strings".into(),
        _ => "is not valid here (the value is not shown: it may be a secret)".to_string(),
    };
    format!("{text}{hint} (the value is not shown)")
}

/// A parse error without the lines of the file it quotes: the line at
/// fault may hold a secret. The line and column numbers stay.
fn without_source_lines(text: &str) -> String {
    let quoted = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|') || t.split_once('|').is_some_and(|(n, _)| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    if !text.lines().any(quoted) {
        return text.to_string();
    }
    text.lines().filter(|l| !quoted(l) && !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

