//! Security headers on every response: pages carry a Content-Security-Policy whose nonce is
//! the one on their inline scripts (a new one per response); everything else carries a
//! policy that allows nothing; no response may be framed or content-sniffed.

mod common;

use common::TestServer;

/// The value of `nonce="..."` on the page's first script.
fn script_nonce(body: &str) -> &str {
    let script = &body[body.find("<script").expect("a script")..];
    let value = &script[script.find("nonce=\"").expect("a nonce") + "nonce=\"".len()..];
    &value[..value.find('"').unwrap()]
}

#[tokio::test]
async fn pages_allow_only_their_own_scripts_with_this_responses_nonce() {
    let server = TestServer::start().await;
    let first = server.http("GET", "/rooms/lobby", None, &[]).await;
    assert_eq!(first.status, 200);
    let policy = first.header("content-security-policy").expect("a CSP");
    let nonce = script_nonce(&first.body);
    assert!(nonce.len() >= 16, "{nonce}");
    for part in [
        &format!("script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'"),
        "default-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{part} missing from {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    // Every inline script carries the nonce.
    let scripts = first.body.matches("<script").count();
    assert_eq!(
        first.body.matches(&format!("nonce=\"{nonce}\"")).count(),
        scripts
    );
    let second = server.http("GET", "/rooms/lobby", None, &[]).await;
    assert_ne!(
        script_nonce(&second.body),
        nonce,
        "a new nonce per response"
    );
}

#[tokio::test]
async fn every_response_forbids_framing_and_sniffing() {
    let server = TestServer::start().await;
    for path in [
        "/",
        "/health",
        "/api/rooms",
        "/api/nothing-here",
        "/no-such-page",
        "/ws",
    ] {
        let response = server.http("GET", path, None, &[]).await;
        assert_eq!(
            response.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            response.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            response.header("referrer-policy").as_deref(),
            Some("strict-origin-when-cross-origin"),
            "{path}"
        );
        let policy = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
    }
    let json = server.http("GET", "/health", None, &[]).await;
    assert_eq!(
        json.header("content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'"),
        "what is no page may do nothing"
    );
}

/// Fingerprinted assets are cached for a year and sent precompressed to clients that accept
/// it; unfingerprinted ones and pages are revalidated; pages are compressed on the fly.
#[tokio::test]
async fn assets_are_cached_by_fingerprint_and_sent_compressed() {
    let site = std::env::temp_dir().join(format!("confab-site-{}", std::process::id()));
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("confab.0123456789abcdef.wasm"), b"plain bytes").unwrap();
    std::fs::write(pkg.join("confab.0123456789abcdef.wasm.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("confab.css"), b"body {}").unwrap();
    let root = site.to_string_lossy().to_string();
    let server = TestServer::start_with(move |c| c.site_root = root).await;

    let hashed = "/pkg/confab.0123456789abcdef.wasm";
    let brotli = server
        .http("GET", hashed, None, &[("Accept-Encoding", "gzip, br")])
        .await;
    assert_eq!(brotli.status, 200);
    assert_eq!(brotli.body, "brotli bytes");
    assert_eq!(brotli.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(
        brotli.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let plain = server.http("GET", hashed, None, &[]).await;
    assert_eq!((plain.status, plain.body.as_str()), (200, "plain bytes"));

    let unhashed = server.http("GET", "/pkg/confab.css", None, &[]).await;
    assert_eq!(
        unhashed.header("cache-control").as_deref(),
        Some("no-cache")
    );

    let page = server
        .http("GET", "/rooms/lobby", None, &[("Accept-Encoding", "gzip")])
        .await;
    assert_eq!(page.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(page.header("cache-control").as_deref(), Some("no-cache"));
    std::fs::remove_dir_all(&site).ok();
}
