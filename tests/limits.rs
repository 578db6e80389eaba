//! Bounds on what a client or an identity provider can make portcullis
//! hold: claims, headers, connections, return URLs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::idp::Idp;
use common::service::{Service, local_toml};
use common::{browser, login, plain};
use serde_json::json;

fn groups(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("group-with-a-long-name-{i:06}")).collect()
}

#[tokio::test]
async fn oversized_claims_are_refused_with_a_clear_reason() {
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    // About 300 KiB of groups: the token is read, the claims are too many.
    idp.set_user(json!({"sub": "u-big", "preferred_username": "big", "groups": groups(10_000)}));
    let client = browser();
    let cb = login(&client, &svc.url, &format!("{}/", svc.url)).await;
    assert_eq!(cb.status(), 400);
    assert!(cb.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("_portcullis=")));
    assert!(svc.logs().contains("KiB of claims"), "{}", svc.logs());

    // About 1 MB of groups: the provider's answer itself is too large.
    idp.set_user(json!({"sub": "u-huge", "preferred_username": "huge", "groups": groups(35_000)}));
    let cb = login(&browser(), &svc.url, &format!("{}/", svc.url)).await;
    assert!(cb.status().is_client_error() || cb.status().is_server_error(), "{}", cb.status());
    assert!(svc.logs().contains("larger than"), "{}", svc.logs());
}

fn raw_request(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_refused() {
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    let addr = svc.addr.to_string();
    let mut many = String::from("GET /auth/nginx HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_request(&addr, many.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let big = format!("GET /auth/nginx HTTP/1.1\r\nHost: x\r\nCookie: _portcullis={}\r\n\r\n", "A".repeat(100_000));
    let answer = raw_request(&addr, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(200)]);

    // And the service is still fine.
    let r = plain().get(format!("{}/healthz", svc.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_their_turn() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("max_connections = 2\n{}", local_toml(&idp))).await;
    let addr = svc.addr.to_string();
    let hold1 = TcpStream::connect(&addr).unwrap();
    let hold2 = TcpStream::connect(&addr).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(&addr).unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    assert!(third.read(&mut buf).is_err(), "served beyond max_connections");
    drop(hold1);
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(hold2);
}

/// Reads from `s` until the server closes it; how long that took.
fn time_until_closed(s: &mut TcpStream) -> (Duration, String) {
    let started = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let closed = s.read_to_end(&mut buf).is_ok();
    assert!(closed, "still open after 10 s");
    (started.elapsed(), String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed_after_header_timeout() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("header_timeout = \"1s\"\n{}", local_toml(&idp))).await;
    let addr = svc.addr.to_string();

    // Half a request head, then nothing more.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /auth/nginx HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (waited, answer) = time_until_closed(&mut slow);
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");
    assert!(!answer.contains("200"), "{answer}");

    // A whole request, answered; the idle keep-alive connection is then closed.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (waited, answer) = time_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");

    // Requests within the timeout keep a connection open.
    let mut busy = TcpStream::connect(&addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..6 {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = busy.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(400));
    }
}

#[tokio::test]
async fn a_back_channel_logout_body_trickled_in_is_refused_after_header_timeout() {
    let idp = Idp::start().await;
    let svc = Service::start(&format!("header_timeout = \"1s\"\n{}", local_toml(&idp))).await;
    let mut s = TcpStream::connect(svc.addr).unwrap();
    s.write_all(
        b"POST /oauth2/backchannel-logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogout_token=",
    )
    .unwrap();
    let (waited, answer) = time_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within header_timeout"), "{answer}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[tokio::test]
async fn an_overlong_return_url_is_400() {
    let idp = Idp::start().await;
    let svc = Service::start(&local_toml(&idp)).await;
    svc.wait_ready().await;
    let rd = format!("{}/{}", svc.url, "a".repeat(3000));
    let r = browser().get(format!("{}/oauth2/start", svc.url)).query(&[("rd", &rd)]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Just under the bound still works, and its login cookie stays under 4 KiB.
    let rd = format!("{}/{}", svc.url, "a".repeat(1900));
    let r = browser().get(format!("{}/oauth2/start", svc.url)).query(&[("rd", &rd)]).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.len() < 4096, "login cookie of {} bytes", cookie.len());
}
