//! The pieces every configuration section is written with: the error that
//! names a key, secrets that never print, human durations, secrets read
//! from files, http(s) URLs.
//!
//! Each subsystem owns its section (its raw shape, validation and validated
//! type) and builds it with these; `config` loads the file and the
//! environment and composes the sections. This is a leaf: it imports
//! nothing from the rest of portcullis.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

/// A start-up error that names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or a value could not be deserialised.
    #[error("configuration: {0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }
}

/// A secret value: never printed by `Debug` or `Display`. Any scalar is
/// read as its text (`client_secret = 12345678` is the secret `12345678`);
/// from the environment, a secret key's value is taken exactly as written
/// (see `config::env_provider`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_char<E>(self, v: char) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}

/// `session.keys`: one key, or a list of them.
pub fn one_or_more_secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Secret>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(Secret),
        More(Vec<Secret>),
    }
    match Option::<OneOrMore>::deserialize(d) {
        Ok(v) => Ok(v.map(|v| match v {
            OneOrMore::One(s) => vec![s],
            OneOrMore::More(list) => list,
        })),
        Err(_) => Err(serde::de::Error::custom("expected a key or a list of keys")),
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "[redacted]" })
    }
}

/// A duration written the human way: `90s`, `10m`, `12h`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write e.g. `90s`, `10m`, `12h`")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

pub fn parse_http_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::invalid(key, format!("`{value}` is not a URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::invalid(key, format!("`{value}` must be an http or https URL")));
    }
    if url.host_str().is_none() {
        return Err(ConfigError::invalid(key, format!("`{value}` has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(key, "must not contain a user name or password"));
    }
    Ok(url)
}

/// Reads a secret given inline or as a `*_file` path; exactly one may be set.
pub fn read_secret(key: &str, inline: Option<Secret>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(key, format!("set either `{key}` or `{key}_file`, not both"))),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::invalid(format!("{key}_file"), format!("cannot read {}: {e}", path.display())))?;
            Ok(Some(Secret::new(text.trim().to_string())))
        }
        (None, None) => Ok(None),
    }
}


/// Writers for values a validated section holds, as `check-config` shows
/// them (`#[serde(serialize_with = "…")]`).
pub mod show {
    use std::fmt::Display;
    use std::time::Duration;

    use serde::Serializer;
    use serde::ser::SerializeSeq;

    /// A duration the human way (`1h 30m`).
    pub fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn duration_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration(d, s),
            None => s.serialize_none(),
        }
    }

    /// Anything by its `Display` (URLs, addresses).
    pub fn text<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn text_opt<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn texts<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&item.to_string())?;
        }
        seq.end()
    }

    /// Secret values of any kind: only how many there are.
    pub fn redacted_all<T, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for _ in v {
            seq.serialize_element("[redacted]")?;
        }
        seq.end()
    }
}
