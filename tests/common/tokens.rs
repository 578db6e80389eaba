//! The personal access tokens page (`/oauth2/tokens`) as a signed-in
//! browser uses it: read the page, make a token, revoke one.

use reqwest::{Client, StatusCode};

/// The value of the first `name="NAME" value="…"` input in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    let end = html[at..].find('"')?;
    Some(html_unescape(&html[at..at + end]))
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The tokens page at `public_url` as `client` sees it (200 and its HTML).
pub async fn page(client: &Client, public_url: &str) -> String {
    let r = client.get(format!("{public_url}/oauth2/tokens")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "tokens page");
    let csp = r.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_string());
    // No script, nothing from elsewhere, and no other site may frame it.
    let csp = csp.unwrap_or_default();
    assert!(csp.starts_with("default-src 'none';") && csp.contains("frame-ancestors 'none'"), "{csp}");
    r.text().await.unwrap()
}

/// Makes a token on the page, as its form does; returns the token shown.
pub async fn make(client: &Client, public_url: &str, name: &str, expires: &str, hosts: &str) -> String {
    let html = page(client, public_url).await;
    let csrf = input_value(&html, "csrf").expect("the form's csrf field");
    let r = client
        .post(format!("{public_url}/oauth2/tokens"))
        .header("accept", "text/html")
        .header("origin", public_url)
        .form(&[("csrf", csrf.as_str()), ("action", "create"), ("name", name), ("expires", expires), ("hosts", hosts)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "making a token");
    let html = r.text().await.unwrap();
    let at = html.find("id=\"new-token\"").expect("the new token is shown");
    let v = html[at..].find("value=\"").expect("its value") + at + 7;
    let token = html[v..v + html[v..].find('"').unwrap()].to_string();
    assert!(token.starts_with("pcat_"), "{token}");
    token
}

/// Revokes the token called `name` with its button on the page.
pub async fn revoke(client: &Client, public_url: &str, name: &str) {
    let html = page(client, public_url).await;
    let at = html.find(&format!("<strong>{name}</strong>")).unwrap_or_else(|| panic!("{name} is not listed: {html}"));
    let csrf = input_value(&html[at..], "csrf").unwrap();
    let id = input_value(&html[at..], "id").unwrap();
    let r = client
        .post(format!("{public_url}/oauth2/tokens"))
        .header("origin", public_url)
        .form(&[("csrf", csrf.as_str()), ("action", "revoke"), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "revoking {name}");
}
