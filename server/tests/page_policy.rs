//! Every page's Content-Security-Policy names its own scripts' nonce: signed in or not,
//! rendered by a route or by the not-found fallback.

mod common;

use common::TestServer;

/// The value of `nonce="..."` on the page's first script.
fn script_nonce(body: &str) -> &str {
    let script = &body[body.find("<script").expect("a script")..];
    let value = &script[script.find("nonce=\"").expect("a nonce") + "nonce=\"".len()..];
    &value[..value.find('"').unwrap()]
}

/// Every page, signed in or not, rendered by a route or by the not-found fallback: its
/// policy names exactly its scripts' nonce. (A signed-in page after a form post once went
/// out with the policy that allows nothing, and never hydrated.) On worker threads, as the
/// server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_names_its_own_nonce() {
    let server = TestServer::start().await;
    let (token, _) = server.guest("Ana").await;
    let cookie = format!("confab_session={token}");
    for n in 0..12 {
        let path = match n % 4 {
            0 => format!("/rooms/r{n}"),
            1 => "/".to_string(),
            2 => format!("/no-such-page-{n}"),
            _ => "/signin".to_string(),
        };
        let headers: Vec<(&str, &str)> = if n % 3 != 0 {
            vec![("cookie", cookie.as_str())]
        } else {
            vec![]
        };
        let page = server.http("GET", &path, None, &headers).await;
        let policy = page.header("content-security-policy").expect("a CSP");
        let nonce = script_nonce(&page.body);
        assert!(
            policy.contains(&format!("'nonce-{nonce}'")),
            "{path}: {policy}"
        );
    }
}
