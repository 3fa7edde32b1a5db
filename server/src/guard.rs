//! Request guards for browsers: who the client is (address, HTTPS), and whether a browser
//! request comes from one of our own pages.
//!
//! Cross-site request forgery and cross-site WebSocket hijacking both ride on the browser
//! sending our session cookie with a request another site's page started. Browsers say where
//! a request comes from (`Sec-Fetch-Site`, `Origin`), so the rule is the one Go's
//! `net/http.CrossOriginProtection` uses:
//! - safe methods (GET, HEAD, OPTIONS) are never state-changing here and pass;
//! - `Sec-Fetch-Site: same-origin` or `none` (typed URL, bookmark) passes;
//! - otherwise an `Origin` must be present and be ours (same host as the request's `Host`)
//!   or listed in `--allowed-origins`;
//! - a request with neither header does not come from a browser page (curl, programs) and
//!   passes: no victim's cookies are involved.
//!
//! The WebSocket upgrade (a GET) is checked by `Origin` alone, which browsers always send on
//! WebSocket handshakes. SameSite=Lax cookies are the second line of defence.
//!
//! Only the rules live here (they import nothing of this crate, so configuration can check
//! its origins with them); the axum layers that apply them are in [`crate::middleware`].

use app::backend::Client;
use axum::http::{header, HeaderMap, Method};
use std::net::IpAddr;

/// `scheme://host[:port]` in lower case, or None when the text is not an http(s) origin.
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = text.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', ' ']);
    valid.then_some(text)
}

/// Which origins may act with a browser's cookies.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(allowed: &[String]) -> Self {
        OriginPolicy {
            allowed: allowed
                .iter()
                .filter_map(|origin| normalize_origin(origin))
                .collect(),
        }
    }

    /// Whether the `Origin` header (present) names us or an allowed origin.
    fn origin_is_ours(&self, headers: &HeaderMap, origin: &str) -> bool {
        let Some(origin) = normalize_origin(origin) else {
            return false; // "null" (sandboxed frames, file://) and garbage
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_ascii_lowercase);
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        host.is_some() && authority == host.as_deref()
    }

    /// The WebSocket upgrade: Ok without an `Origin` (not a browser) or with one of ours.
    pub fn check_upgrade(&self, headers: &HeaderMap) -> Result<(), String> {
        match headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""))
        {
            None => Ok(()),
            Some(origin) if self.origin_is_ours(headers, origin) => Ok(()),
            Some(origin) => Err(format!("foreign origin {origin:?}")),
        }
    }

    /// A state-changing request (see the module docs for the rule).
    pub fn check_request(&self, method: &Method, headers: &HeaderMap) -> Result<(), String> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""));
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("");
            if matches!(site, "same-origin" | "none") {
                return Ok(());
            }
            return match origin.and_then(normalize_origin) {
                Some(origin) if self.allowed.contains(&origin) => Ok(()),
                _ => Err(format!("Sec-Fetch-Site {site:?} from origin {origin:?}")),
            };
        }
        match origin {
            None => Ok(()),
            Some(origin) if self.origin_is_ours(headers, origin) => Ok(()),
            Some(origin) => Err(format!("foreign origin {origin:?}")),
        }
    }
}

/// The [`Client`] a request comes from: the TCP peer, or behind a proxy the last entry of
/// its address header (and whether it was HTTPS).
pub fn client_of(proxy_header: Option<&str>, headers: &HeaderMap, peer: Option<IpAddr>) -> Client {
    let Some(proxy_header) = proxy_header else {
        return Client {
            ip: peer,
            https: false,
        };
    };
    // The proxy appends the address it saw: the last entry is the one it vouches for.
    let forwarded = headers
        .get(proxy_header)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    Client {
        ip: forwarded.or(peer),
        https,
    }
}

/// The path and query of `referer` when it is a page of this origin (`host`), else None: a
/// plain form post is only ever sent back to one of our own pages. The path must be a local
/// one ([`local_path`]): `http://host//evil.example/x` names our host, but its path would
/// send the browser to `//evil.example/x`, another site.
pub fn same_origin_path(referer: &str, host: &str) -> Option<String> {
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let path = path.split('#').next().unwrap_or("/");
    if !authority.eq_ignore_ascii_case(host) {
        return None;
    }
    local_path(path)
}

/// A query string's pairs, decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `next` if it is a path on this site (not `//elsewhere`, not a URL): where to go after a
/// form, never an open redirect.
pub fn local_path(next: &str) -> Option<String> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && !next.chars().any(|c| c.is_control() || c == '\\');
    local.then(|| next.to_string())
}

/// `path` with `params`, less any earlier form outcome (`error`, `form`), plus `set`.
pub fn with_query(path: &str, params: &[(String, String)], set: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        if key != "error" && key != "form" && !set.iter().any(|(k, _)| k == key) {
            query.append_pair(key, value);
        }
    }
    for (key, value) in set {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn origins_normalize() {
        assert_eq!(
            normalize_origin("HTTPS://Chat.Example.com/").as_deref(),
            Some("https://chat.example.com")
        );
        for bad in [
            "null",
            "chat.example.com",
            "ftp://x",
            "https://",
            "https://a/b",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_from_our_pages_pass_and_others_do_not() {
        let policy = OriginPolicy::new(&["https://app.example.com".into()]);
        let post = Method::POST;
        let ok =
            |h: &[(&'static str, &'static str)]| policy.check_request(&post, &headers(h)).is_ok();
        assert!(ok(&[
            ("host", "chat.local:3000"),
            ("origin", "http://chat.local:3000")
        ]));
        assert!(ok(&[
            ("host", "x"),
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://y")
        ]));
        assert!(ok(&[
            ("host", "x"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example.com")
        ]));
        assert!(ok(&[("host", "x")]), "programs send neither header");
        assert!(!ok(&[
            ("host", "chat.local:3000"),
            ("origin", "http://evil.test")
        ]));
        assert!(!ok(&[("host", "x"), ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[
            ("host", "x"),
            ("sec-fetch-site", "same-site"),
            ("origin", "http://sub.x")
        ]));
        assert!(!ok(&[("host", "x"), ("origin", "null")]));
        assert!(policy
            .check_request(&Method::GET, &headers(&[("origin", "http://evil.test")]))
            .is_ok());
        assert!(policy
            .check_upgrade(&headers(&[("host", "x:1"), ("origin", "http://evil.test")]))
            .is_err());
        assert!(policy
            .check_upgrade(&headers(&[("host", "x:1"), ("origin", "http://x:1")]))
            .is_ok());
        assert!(policy.check_upgrade(&headers(&[("host", "x:1")])).is_ok());
    }

    #[test]
    fn the_client_address_comes_from_the_proxy_only_when_configured() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            client_of(None, &h, Some(peer)),
            Client {
                ip: Some(peer),
                https: false
            }
        );
        assert_eq!(
            client_of(Some("x-forwarded-for"), &h, Some(peer)),
            Client {
                ip: Some("5.6.7.8".parse().unwrap()),
                https: true
            }
        );
    }

    #[test]
    fn plain_forms_go_back_to_our_own_pages_only() {
        assert_eq!(
            same_origin_path("http://127.0.0.1:3000/rooms/a?x=1#top", "127.0.0.1:3000").as_deref(),
            Some("/rooms/a?x=1")
        );
        assert_eq!(
            same_origin_path("https://chat.example", "chat.example").as_deref(),
            Some("/")
        );
        assert_eq!(
            same_origin_path("https://evil.example/x", "chat.example"),
            None
        );
        assert_eq!(same_origin_path("/relative", "chat.example"), None);
        for elsewhere in [
            "http://chat.example//evil.example/x",
            "http://chat.example/\\evil.example",
        ] {
            assert_eq!(
                same_origin_path(elsewhere, "chat.example"),
                None,
                "{elsewhere}"
            );
        }
        assert_eq!(local_path("/rooms/a").as_deref(), Some("/rooms/a"));
        for open_redirect in ["//evil.example", "https://evil.example", "/\\evil", "rooms"] {
            assert_eq!(local_path(open_redirect), None, "{open_redirect}");
        }
        let params = query_pairs("next=%2Frooms%2Fa&error=old&form=sign_in");
        assert_eq!(
            with_query("/signin", &params, &[]),
            "/signin?next=%2Frooms%2Fa"
        );
        assert_eq!(
            with_query(
                "/signin",
                &params,
                &[("error", "wrong password"), ("form", "sign_in")]
            ),
            "/signin?next=%2Frooms%2Fa&error=wrong+password&form=sign_in"
        );
    }
}
