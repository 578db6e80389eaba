//! Session minting for the benchmark: a mock identity provider, and real
//! logins through a running portcullis to get valid session cookies.
//!
//!     bench-mint idp DIR              # serve a provider; write DIR/issuer
//!     bench-mint login URL COUNT OUT  # log in COUNT times, one cookie a line

#[path = "../tests/common/idp.rs"]
#[allow(dead_code)]
mod idp;

use std::io::Write;

use reqwest::header::LOCATION;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("idp") => {
            let dir = std::path::PathBuf::from(args.get(2).expect("DIR"));
            let provider = idp::Idp::start().await;
            std::fs::write(dir.join("issuer"), &provider.issuer).unwrap();
            eprintln!("provider at {}", provider.issuer);
            // Serve until killed.
            std::future::pending::<()>().await;
        }
        Some("login") => {
            let base = args.get(2).expect("URL").trim_end_matches('/').to_string();
            let count: usize = args.get(3).expect("COUNT").parse().expect("a number");
            let out = args.get(4).expect("OUT");
            let cookies = mint(&base, count).await;
            let mut f = std::fs::File::create(out).unwrap();
            for c in cookies {
                writeln!(f, "{c}").unwrap();
            }
        }
        _ => {
            eprintln!("usage: bench-mint idp DIR | bench-mint login URL COUNT OUT");
            std::process::exit(2);
        }
    }
}

async fn mint(base: &str, count: usize) -> Vec<String> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut set = tokio::task::JoinSet::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..16 {
        let (client, base, next) = (client.clone(), base.to_string(), next.clone());
        set.spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                mine.push(one_login(&client, &base).await);
            }
            mine
        });
    }
    set.join_all().await.into_iter().flatten().collect()
}

/// One login, following the redirects by hand and carrying the login cookie.
async fn one_login(client: &reqwest::Client, base: &str) -> String {
    let start = client.get(format!("{base}/oauth2/start?rd=/")).send().await.unwrap();
    let login_cookie = start.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let at_idp = client.get(start.headers()[LOCATION].to_str().unwrap()).send().await.unwrap();
    let callback = at_idp.headers()[LOCATION].to_str().unwrap().to_string();
    let done = client.get(callback).header("cookie", login_cookie).send().await.unwrap();
    assert_eq!(done.status(), 302, "login failed: {:?}", done.text().await);
    done.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("_portcullis=").filter(|v| !v.starts_with(';')))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a session cookie")
}
