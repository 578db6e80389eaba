//! Certificate credentials: `private_key_jwt` client authentication
//! (RFC 7523 client assertions, OpenID Connect Core section 9).
//!
//! Instead of a client secret, every request to a token endpoint carries
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! and `client_assertion`, a short-lived JWT signed RS256 with the client's
//! private key. Its header names the certificate by its SHA-256 thumbprint
//! (`x5t#S256`), which is how Microsoft Entra ID finds the certificate
//! uploaded to the app registration. Its claims are `iss` = `sub` = the
//! client ID, `aud` = the token endpoint, a random `jti`, and `iat`/`nbf`/
//! `exp` spanning five minutes.
//!
//! [`ClientKey::from_pem`] checks everything once, at start: the key is an
//! unencrypted RSA key of at least 2048 bits, the certificate parses, has
//! not expired, and holds the key's public half. Neither its errors nor its
//! `Debug` ever show the key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use x509_cert::der::{DecodePem as _, Encode as _};

/// `client_assertion_type` for a JWT client assertion (RFC 7523 section 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid.
const LIFETIME: Duration = Duration::from_secs(300);
/// Entra ID (and common sense) refuses smaller RSA keys.
const MIN_BITS: usize = 2048;

/// What is wrong with a key or certificate. The text never contains either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key is unusable; the text says why.
    #[error("{0}")]
    Key(String),
    /// The certificate is unusable, or does not go with the key.
    #[error("{0}")]
    Certificate(String),
}

/// A private key with its certificate, ready to sign client assertions.
pub struct ClientKey {
    signer: SigningKey<Sha256>,
    /// base64url SHA-256 of the certificate's DER encoding.
    x5t_s256: String,
    not_after: SystemTime,
}

/// As `check-config` shows it: the certificate, never the key.
impl serde::Serialize for ClientKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "key": "[redacted]",
            "x5t#S256": self.x5t_s256,
            "not_after": humantime::format_rfc3339_seconds(self.not_after).to_string(),
        })
        .serialize(s)
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("x5t#S256", &self.x5t_s256).finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads an RSA private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1
    /// `BEGIN RSA PRIVATE KEY`) and its certificate (PEM; with a chain,
    /// the first certificate is the client's), and checks that they belong
    /// together.
    pub fn from_pem(key_pem: &str, certificate_pem: &str) -> Result<ClientKey, KeyError> {
        let key = parse_key(key_pem)?;
        let bits = key.size() * 8;
        if bits < MIN_BITS {
            return Err(KeyError::Key(format!("is an RSA key of {bits} bits; at least {MIN_BITS} are needed")));
        }

        let certificate = first_certificate(certificate_pem)
            .and_then(|pem| x509_cert::Certificate::from_pem(pem.as_bytes()).ok())
            .ok_or_else(|| {
                KeyError::Certificate("is not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)".into())
            })?;
        let der = certificate
            .to_der()
            .map_err(|_| KeyError::Certificate("cannot be encoded again as DER".into()))?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| KeyError::Certificate("has an unreadable public key".into()))?;
        let public = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|_| KeyError::Certificate("does not hold an RSA public key".into()))?;
        if public != RsaPublicKey::from(&key) {
            return Err(KeyError::Certificate("is not the certificate of this private key (their public keys differ)".into()));
        }
        let not_after = certificate.tbs_certificate.validity.not_after.to_system_time();
        if not_after <= SystemTime::now() {
            return Err(KeyError::Certificate(format!(
                "expired on {}: create a new one and upload it to the app registration",
                humantime::format_rfc3339_seconds(not_after)
            )));
        }
        Ok(ClientKey {
            signer: SigningKey::<Sha256>::new(key),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            not_after,
        })
    }

    /// The certificate's SHA-256 thumbprint as sent in `x5t#S256`.
    pub fn thumbprint(&self) -> &str {
        &self.x5t_s256
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A fresh client assertion for `client_id` at `token_endpoint`.
    pub fn assertion(&self, client_id: &str, token_endpoint: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": token_endpoint,
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME.as_secs(),
        });
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.signer.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The form parameters that authenticate the client: `client_id`,
    /// `client_assertion_type` and a fresh `client_assertion`.
    pub fn form(&self, client_id: &str, token_endpoint: &str) -> [(&'static str, String); 3] {
        [
            ("client_id", client_id.to_string()),
            ("client_assertion_type", ASSERTION_TYPE.to_string()),
            ("client_assertion", self.assertion(client_id, token_endpoint)),
        ]
    }
}

/// The first PEM certificate block: a chain file starts with the client's own.
fn first_certificate(pem: &str) -> Option<&str> {
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let end = start + pem[start..].find(END)? + END.len();
    Some(&pem[start..end])
}

fn parse_key(pem: &str) -> Result<RsaPrivateKey, KeyError> {
    let pem = pem.trim();
    let key = if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(KeyError::Key(
            "is encrypted; portcullis needs it unencrypted (protect the file's permissions instead)".into(),
        ));
    } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(pem).ok()
    } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(pem).ok()
    } else {
        None
    };
    let key = key.ok_or_else(|| {
        KeyError::Key(
            "is not a PEM RSA private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".into(),
        )
    })?;
    key.validate().map_err(|_| KeyError::Key("is not a valid RSA private key".into()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier as _;

    const KEY: &str = include_str!("../tests/fixtures/entra-client.key");
    const CERT: &str = include_str!("../tests/fixtures/entra-client.crt");
    const OTHER_KEY: &str = include_str!("../tests/fixtures/other.key");

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(n).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn assertion_is_signed_with_the_key_and_names_the_certificate() {
        let key = ClientKey::from_pem(KEY, CERT).unwrap();
        let jwt = key.assertion("app-id", "https://login.example.com/t/oauth2/v2.0/token");
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "RS256");
        // The thumbprint openssl computes for the fixture:
        // openssl x509 -in entra-client.crt -outform der | openssl dgst -sha256 -binary | base64url
        assert_eq!(header["x5t#S256"], "nKTZ8twox-o67cxLjgBB3ak39s0aW52vYvsm1uPWSUY");
        let claims = part(&jwt, 1);
        assert_eq!(claims["iss"], "app-id");
        assert_eq!(claims["sub"], "app-id");
        assert_eq!(claims["aud"], "https://login.example.com/t/oauth2/v2.0/token");
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert_eq!(claims["nbf"].as_u64(), Some(iat));
        assert_eq!(exp - iat, 300);
        let other = key.assertion("app-id", "https://login.example.com/t/oauth2/v2.0/token");
        assert_ne!(part(&other, 1)["jti"], claims["jti"], "jti is fresh each time");

        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let public = RsaPrivateKey::from_pkcs8_pem(KEY).unwrap().to_public_key();
        let sig = Signature::try_from(URL_SAFE_NO_PAD.decode(sig).unwrap().as_slice()).unwrap();
        VerifyingKey::<Sha256>::new(public).verify(input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn pkcs1_keys_are_read_too() {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let pkcs1 = RsaPrivateKey::from_pkcs8_pem(KEY).unwrap().to_pkcs1_pem(Default::default()).unwrap();
        let key = ClientKey::from_pem(&pkcs1, CERT).unwrap();
        assert_eq!(key.thumbprint(), "nKTZ8twox-o67cxLjgBB3ak39s0aW52vYvsm1uPWSUY");
    }

    #[test]
    fn bad_keys_and_certificates_are_refused_without_showing_them() {
        let cases: [(&str, &str, &str); 8] = [
            (OTHER_KEY, CERT, "is not the certificate of this private key"),
            (CERT, CERT, "is not a PEM RSA private key"),
            ("not a key", CERT, "is not a PEM RSA private key"),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----", CERT, "is encrypted"),
            (KEY, KEY, "is not a PEM X.509 certificate"),
            (KEY, "", "is not a PEM X.509 certificate"),
            (KEY, "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----", "is not a PEM X.509 certificate"),
            (KEY, "-----BEGIN CERTIFICATE-----\nMIIB", "is not a PEM X.509 certificate"),
        ];
        for (key, cert, want) in cases {
            let err = ClientKey::from_pem(key, cert).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains("MII"), "{err}");
        }
        let truncated = &KEY[..KEY.len() / 2];
        let err = ClientKey::from_pem(&format!("{truncated}\n-----END PRIVATE KEY-----"), CERT).unwrap_err();
        assert!(matches!(err, KeyError::Key(_)), "{err}");
        assert!(!format!("{:?}", ClientKey::from_pem(KEY, CERT).unwrap()).contains("MII"));
    }

    fn config(oidc: &str) -> Result<crate::Config, String> {
        config_with(oidc, "")
    }

    fn config_with(oidc: &str, graph: &str) -> Result<crate::Config, String> {
        crate::Config::from_toml_str(&format!(
            "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://login.microsoftonline.com/0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11/v2.0\"\n\
             client_id = \"app-id\"\n{oidc}\n[graph]\nenabled = true\nmode = \"client_credentials\"\n{graph}\n"
        ))
        .map_err(|e| e.to_string())
    }

    fn files(key: &str, cert: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let (k, c) = (dir.path().join("client.key"), dir.path().join("client.crt"));
        std::fs::write(&k, key).unwrap();
        std::fs::write(&c, cert).unwrap();
        let toml = format!("client_key_file = {k:?}\nclient_certificate_file = {c:?}");
        (dir, toml)
    }

    #[test]
    fn configuration_checks_the_key_and_names_the_key_at_fault() {
        let jwt = "client_auth = \"private_key_jwt\"";
        let (_dir, good) = files(KEY, CERT);
        let c = config(&format!("{jwt}\n{good}")).unwrap();
        let key = c.oidc.client_key.as_ref().unwrap();
        assert_eq!(key.thumbprint(), "nKTZ8twox-o67cxLjgBB3ak39s0aW52vYvsm1uPWSUY");
        assert!(c.oidc.client_secret.is_empty());
        // Graph uses the certificate too, unless it has its own secret.
        assert!(c.graph.client_secret.is_none());
        let own = config_with(&format!("{jwt}\n{good}"), "client_secret = \"graph-secret\"").unwrap();
        assert_eq!(own.graph.client_secret.as_ref().unwrap().expose(), "graph-secret");
        let shown = c.redacted().to_string();
        assert!(shown.contains("\"client_auth\":\"private_key_jwt\"") && shown.contains(key.thumbprint()), "{shown}");
        assert!(!shown.contains("MII") && !format!("{c:?}").contains("MII"), "{shown}");

        // Inline, as from the environment.
        let inline = format!("{jwt}\nclient_key = {KEY:?}\nclient_certificate = {CERT:?}");
        assert!(config(&inline).unwrap().oidc.client_key.is_some());

        let (_d1, mismatch) = files(OTHER_KEY, CERT);
        let (_d2, not_a_key) = files("-----BEGIN PRIVATE KEY-----\nMIIBroken\n-----END PRIVATE KEY-----\n", CERT);
        let (_d3, not_a_cert) = files(KEY, OTHER_KEY);
        for (oidc, key, reason) in [
            (format!("{jwt}\n{mismatch}"), "oidc.client_certificate_file", "is not the certificate of this private key"),
            (format!("{jwt}\n{not_a_key}"), "oidc.client_key_file", "is not a PEM RSA private key"),
            (format!("{jwt}\n{not_a_cert}"), "oidc.client_certificate_file", "is not a PEM X.509 certificate"),
            (format!("{jwt}\nclient_key = {OTHER_KEY:?}\nclient_certificate = {CERT:?}"), "oidc.client_certificate", "is not the certificate"),
            (format!("{jwt}\nclient_key = \"-----BEGIN RSA PRIVATE KEY-----\\nMIIsecret\""), "oidc.client_certificate", "is required"),
            (format!("{jwt}\nclient_certificate = {CERT:?}"), "oidc.client_key", "is required"),
            (jwt.to_string(), "oidc.client_key", "is required"),
            (format!("{jwt}\n{good}\nclient_secret = \"s3cret-value\""), "oidc.client_secret", "is not used"),
            (good.clone(), "oidc.client_key_file", "private_key_jwt"),
            (String::new(), "oidc.client_secret", "is required"),
        ] {
            let err = config(&oidc).unwrap_err();
            assert!(err.contains(&format!("`{key}`")) && err.contains(reason), "{oidc}: {err}");
            assert!(!err.contains("MII") && !err.contains("s3cret-value"), "{err}");
        }
    }

    #[test]
    fn the_first_certificate_of_a_chain_is_used() {
        let chain = format!("{CERT}\n{CERT}");
        let key = ClientKey::from_pem(KEY, &chain).unwrap();
        assert_eq!(key.thumbprint(), "nKTZ8twox-o67cxLjgBB3ak39s0aW52vYvsm1uPWSUY");
    }
}
