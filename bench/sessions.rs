//! Helper for `bench/load-faults`: a mock identity provider, and real
//! logins through portcullis that mint session cookies.
//!
//! ```text
//! bench-sessions idp ISSUER_FILE SECONDS [--groups COUNT LENGTH]
//!     Serves a mock provider on 127.0.0.1 (the test suite's), writes its
//!     issuer URL to ISSUER_FILE, and exits after SECONDS. --groups puts
//!     COUNT distinct group names of LENGTH characters each in every
//!     user's `groups` claim (by default users have none).
//! bench-sessions login PORTCULLIS_URL COUNT OUT_FILE [--logout] [--verify]
//!                [--tampered FILE] [--store-keys FILE --key BASE64]
//!     Signs in COUNT times (each a new browser) and writes one session
//!     cookie value per line. --logout signs each out again (its session is
//!     deleted). --verify has each session verified once (/auth/nginx must
//!     answer 200), as a session in use is. --tampered writes altered copies of the cookies, and
//!     cookies sealed with another key. --store-keys writes the Redis key of
//!     each session (needs the cookie key), so the caller can expire them.
//! ```

#[path = "../tests/common/idp.rs"]
#[allow(dead_code)]
mod idp;

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis::session::SessionId;
use portcullis::session::cookie::{Purpose, Sealer};
use reqwest::StatusCode;

const SESSION_COOKIE: &str = "_portcullis";
const REDIS_PREFIX: &str = "portcullis:session:";
const USAGE: &str = "usage: bench-sessions idp ISSUER_FILE SECONDS [--groups COUNT LENGTH]\n       \
    bench-sessions login PORTCULLIS_URL COUNT OUT_FILE [--logout] [--verify] [--tampered FILE] [--store-keys FILE --key BASE64]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("idp") if args.len() == 3 => serve_idp(&args[1], &args[2], None).await,
        Some("idp") if args.len() == 6 && args[3] == "--groups" => match (args[4].parse(), args[5].parse()) {
            (Ok(count), Ok(length)) => serve_idp(&args[1], &args[2], Some((count, length))).await,
            _ => Err(format!("--groups COUNT LENGTH: not numbers: {} {}", args[4], args[5])),
        },
        Some("login") if args.len() >= 4 => login_many(&args[1..]).await,
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-sessions: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_idp(issuer_file: &str, seconds: &str, groups: Option<(usize, usize)>) -> Result<(), String> {
    let seconds: u64 = seconds.parse().map_err(|_| format!("SECONDS: not a number: {seconds}"))?;
    let provider = idp::Idp::start().await;
    if let Some((count, length)) = groups {
        // `group-07-xxxx…`: distinct, LENGTH characters each.
        let names: Vec<String> = (0..count).map(|i| format!("{:x<length$}", format!("group-{i:02}-"))).collect();
        provider.set_user(serde_json::json!({
            "sub": "user-1", "preferred_username": "alice", "email": "alice@example.com",
            "email_verified": true, "name": "Alice", "groups": names,
        }));
    }
    // Long-lived access tokens: no refresh during the load.
    provider.set_expires_in(3600);
    std::fs::write(issuer_file, &provider.issuer).map_err(|e| format!("{issuer_file}: {e}"))?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}

struct LoginArgs {
    base: String,
    count: usize,
    out: String,
    logout: bool,
    verify: bool,
    tampered: Option<String>,
    store_keys: Option<String>,
    key: Option<[u8; 32]>,
}

fn parse_login(args: &[String]) -> Result<LoginArgs, String> {
    let mut parsed = LoginArgs {
        base: args[0].trim_end_matches('/').to_string(),
        count: args[1].parse().map_err(|_| format!("COUNT: not a number: {}", args[1]))?,
        out: args[2].clone(),
        logout: false,
        verify: false,
        tampered: None,
        store_keys: None,
        key: None,
    };
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--logout" => parsed.logout = true,
            "--verify" => parsed.verify = true,
            "--tampered" => parsed.tampered = Some(value()?),
            "--store-keys" => parsed.store_keys = Some(value()?),
            "--key" => {
                let bytes = STANDARD.decode(value()?.trim()).map_err(|_| "--key: not base64".to_string())?;
                parsed.key = Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "--key: not 32 bytes".to_string())?);
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if parsed.store_keys.is_some() && parsed.key.is_none() {
        return Err("--store-keys needs --key".into());
    }
    Ok(parsed)
}

/// One browser's login; returns the session cookie value and the browser.
async fn login_once(base: &str) -> Result<(String, reqwest::Client), String> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let location = |r: &reqwest::Response| -> Result<String, String> {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| format!("no Location in the answer ({})", r.status()))
    };
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}")) }
    };
    let start = get(format!("{base}/oauth2/start?rd={base}/")).await?;
    let at_idp = get(location(&start)?).await?;
    let callback = get(location(&at_idp)?).await?;
    if callback.status() != StatusCode::FOUND {
        return Err(format!("login failed: {}", callback.status()));
    }
    let cookie = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('='))
        .find(|(n, v)| *n == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_string())
        .ok_or("no session cookie after the login")?;
    Ok((cookie, client))
}

async fn login_many(args: &[String]) -> Result<(), String> {
    let a = parse_login(args)?;
    let mut cookies = Vec::with_capacity(a.count);
    // A few browsers at a time.
    for chunk_start in (0..a.count).step_by(8) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk_start..(chunk_start + 8).min(a.count) {
            let base = a.base.clone();
            let (logout, verify) = (a.logout, a.verify);
            set.spawn(async move {
                let (cookie, client) = login_once(&base).await?;
                if verify {
                    let r = client
                        .get(format!("{base}/auth/nginx"))
                        .header("x-original-url", format!("{base}/"))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status() != StatusCode::OK {
                        return Err(format!("verify failed: {}", r.status()));
                    }
                }
                if logout {
                    let r = client.get(format!("{base}/oauth2/logout")).send().await.map_err(|e| e.to_string())?;
                    if r.status() != StatusCode::FOUND && r.status() != StatusCode::OK {
                        return Err(format!("logout failed: {}", r.status()));
                    }
                }
                Ok::<_, String>(cookie)
            });
        }
        for c in set.join_all().await {
            cookies.push(c?);
        }
    }
    write_lines(&a.out, &cookies)?;

    if let Some(path) = &a.tampered {
        write_lines(path, &tamper(&cookies))?;
    }
    if let (Some(path), Some(key)) = (&a.store_keys, a.key) {
        let sealer = Sealer::new(&[key]);
        let keys = cookies
            .iter()
            .map(|c| {
                let opened = sealer.open(Purpose::Session, c).ok_or("a minted cookie does not open with --key")?;
                let id = SessionId::from_bytes(&opened.payload).ok_or("a minted cookie holds no session ID")?;
                Ok(format!("{REDIS_PREFIX}{}", id.store_key()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        write_lines(path, &keys)?;
    }
    Ok(())
}

/// Altered copies of real cookies: one character changed, cut short,
/// lengthened; and well-formed cookies sealed with a key portcullis does
/// not have.
fn tamper(cookies: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let stranger = Sealer::new(&[rand::random::<[u8; 32]>()]);
    for (i, c) in cookies.iter().enumerate() {
        let mut bytes = c.clone().into_bytes();
        let at = (i * 7919) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        out.push(String::from_utf8(bytes).expect("ASCII"));
        out.push(c[..c.len() - 4].to_string());
        out.push(format!("{c}AAAA"));
        out.push(stranger.seal(Purpose::Session, SessionId::generate().as_bytes()));
    }
    out
}

fn write_lines(path: &str, lines: &[String]) -> Result<(), String> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}
