//! Which page a path shows, the current location as signals, and moving between pages
//! without reloading (links and [`Location::navigate`]).
//!
//! Why not `leptos_router`: Confab has four pages and one path parameter, and every page
//! loads the same WASM. The general router (nested routes, matching per route type, view
//! transitions, its own URL handling) was 35 KB of that WASM with Brotli: 337,968 B with it,
//! 302,455 B with this module (README, "First load"). What Confab used of it is here:
//! - [`Page::of`]: the page for a path; [`room_of`]: the room in `/rooms/{room}`;
//! - [`Location`]: the path and query as signals, from the request on the server and from
//!   `window.location` in the browser, following `pushState` and back/forward;
//! - in the browser, a click on a link to this origin changes the page in place, as a
//!   router does: not with a modifier key, another button, `target`, `download` or
//!   `rel="external"`, and not for a link to another part of this page (`#…`).
//!
//! A page of the other WASM bundle ([`Bundle`]) is left to the browser: a link to it or
//! [`Location::navigate`] loads it.
//!
//! The server renders exactly [`Page::SERVER_PATHS`] as pages (`server/src/pages.rs`); any
//! other path is rendered as [`Page::NotFound`], which sets the 404 status.

use leptos::prelude::*;

/// The pages of the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Home,
    SignIn,
    Dashboard,
    Room,
    NotFound,
}

impl Page {
    /// The page a path (without query) shows: exactly the paths the server answers as pages
    /// ([`Page::SERVER_PATHS`]; `/signin/` is not `/signin`).
    pub fn of(path: &str) -> Page {
        match path {
            "" | "/" => Page::Home,
            "/signin" => Page::SignIn,
            "/dashboard" => Page::Dashboard,
            _ if room_of(path).is_some() => Page::Room,
            _ => Page::NotFound,
        }
    }

    /// The paths the server renders as pages (axum's syntax), every other one is a 404.
    pub const SERVER_PATHS: [&'static str; 4] = ["/", "/signin", "/dashboard", "/rooms/{room}"];

    /// The WASM bundle the server sends with this page.
    pub fn bundle(self) -> Bundle {
        match self {
            Page::Home | Page::Room | Page::NotFound => Bundle::Readers,
            Page::SignIn | Page::Dashboard => Bundle::Full,
        }
    }

    /// Whether the bundle running here can show this page in place; otherwise the browser
    /// loads it, with its own bundle.
    pub fn in_this_bundle(self) -> bool {
        cfg!(any(feature = "full", not(feature = "hydrate"))) || self.bundle() == Bundle::Readers
    }
}

/// The two WASM bundles, both built from `frontend/`. The readers' bundle has the pages
/// people chat in (home, rooms, 404); the full bundle (feature `full`) has every page, so
/// one who signs in or an operator moves on in place. The pages only the full bundle has are
/// visited rarely, and their code was weight on every reader's first load: the operators'
/// dashboard 17 KB with Brotli, sign-in and its two forms 4 KB (README, "First load").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bundle {
    Readers,
    Full,
}

impl Bundle {
    /// The files' name in the site's `pkg` (`confab.js`, `confab.wasm`, …).
    pub fn name(self) -> &'static str {
        match self {
            Bundle::Readers => "confab",
            Bundle::Full => "confab-full",
        }
    }

    /// Where the optimized build writes the bundle's file hashes, next to the server.
    pub fn hash_file(self) -> &'static str {
        match self {
            Bundle::Readers => "hash.txt",
            Bundle::Full => "hash-full.txt",
        }
    }
}

/// The room of a `/rooms/{room}` path, percent-decoded (whether it is a valid room id is
/// for the server to say).
pub fn room_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/rooms/")?;
    (!rest.is_empty() && !rest.contains('/')).then(|| percent_decode(rest, false))
}

/// The value of `name` in a query string (`a=1&b=2`, without `?`), decoded as a form
/// would encode it (`+` is a space).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key, true) == name).then(|| percent_decode(value, true))
    })
}

/// `%XX` escapes decoded (and `+` as a space in a query); a malformed escape stays as
/// written, and bytes that are not UTF-8 become U+FFFD.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
        match bytes[at] {
            b'%' => {
                if let (Some(high), Some(low)) = (hex(at + 1), hex(at + 2)) {
                    out.push((high * 16 + low) as u8);
                    at += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the reader is: provided once by `App`.
#[derive(Clone, Copy)]
pub struct Location {
    /// The path, as in the address bar (`/rooms/general`).
    pub path: RwSignal<String>,
    /// The query, without `?` (`next=%2Frooms%2Fgeneral`).
    pub query: RwSignal<String>,
}

impl Location {
    pub fn provide() -> Self {
        let (path, query) = current();
        let location = Location {
            path: RwSignal::new(path),
            query: RwSignal::new(query),
        };
        provide_context(location);
        #[cfg(feature = "hydrate")]
        browser::follow(location);
        location
    }

    pub fn expect() -> Self {
        expect_context::<Location>()
    }

    /// The page shown now.
    pub fn page(&self) -> Page {
        self.path.with(|path| Page::of(path))
    }

    /// The value of `name` in the query (tracked).
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query.with(|query| query_value(query, name))
    }

    /// Shows the page at `href` (a path on this site, with or without query), adding it to
    /// the browser's history. Nothing happens on the server.
    pub fn navigate(&self, href: &str) {
        #[cfg(feature = "hydrate")]
        browser::push(*self, href);
        #[cfg(not(feature = "hydrate"))]
        let _ = href;
    }

    /// Sets path and query, notifying only what changed.
    #[cfg(feature = "hydrate")]
    fn set(&self, path: String, query: String) {
        if self.path.with_untracked(|current| *current != path) {
            self.path.set(path);
        }
        if self.query.with_untracked(|current| *current != query) {
            self.query.set(query);
        }
    }
}

/// The location (path, query) this page was rendered for: the request's on the server.
#[cfg(feature = "ssr")]
pub fn current() -> (String, String) {
    use_context::<http::request::Parts>()
        .map(|parts| {
            let uri = &parts.uri;
            (
                uri.path().to_string(),
                uri.query().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_else(|| ("/".to_string(), String::new()))
}

/// The location (path, query) this page was rendered for: the address bar's in the browser.
#[cfg(not(feature = "ssr"))]
pub fn current() -> (String, String) {
    #[cfg(feature = "hydrate")]
    {
        let location = window().location();
        let path = location.pathname().unwrap_or_else(|_| "/".to_string());
        let search = location.search().unwrap_or_default();
        (path, search.trim_start_matches('?').to_string())
    }
    #[cfg(not(feature = "hydrate"))]
    ("/".to_string(), String::new())
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::Location;
    use leptos::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};

    /// Keeps `location` in step with the back and forward buttons, and turns clicks on
    /// links to this site into in-place navigation.
    pub fn follow(location: Location) {
        // Both live as long as the page: `App` is never unmounted.
        let _ = window_event_listener(leptos::ev::popstate, move |_| {
            let (path, query) = super::current();
            location.set(path, query);
        });
        let _ = window_event_listener(leptos::ev::click, move |ev| {
            if let Some(href) = in_app_link(&ev) {
                ev.prevent_default();
                push(location, &href);
            }
        });
    }

    /// The path and query a click should show in place, if it is a plain click on a link
    /// to another page of this site.
    fn in_app_link(ev: &web_sys::MouseEvent) -> Option<String> {
        if ev.default_prevented()
            || ev.button() != 0
            || ev.meta_key()
            || ev.ctrl_key()
            || ev.shift_key()
            || ev.alt_key()
        {
            return None;
        }
        let anchor = ev
            .target()?
            .dyn_into::<web_sys::Element>()
            .ok()?
            .closest("a[href]")
            .ok()??
            .dyn_into::<web_sys::HtmlAnchorElement>()
            .ok()?;
        let target = anchor.target();
        let external = anchor
            .get_attribute("rel")
            .is_some_and(|rel| rel.split_ascii_whitespace().any(|r| r == "external"));
        if (!target.is_empty() && target != "_self") || anchor.has_attribute("download") || external
        {
            return None;
        }
        let here = window().location();
        if anchor.origin() != here.origin().ok()? {
            return None;
        }
        let (path, search) = (anchor.pathname(), anchor.search());
        let same_page = here.pathname().ok()? == path && here.search().ok()? == search;
        if same_page && !anchor.hash().is_empty() {
            return None;
        }
        Some(format!("{path}{search}"))
    }

    /// Adds `href` to the history and shows it, from the top of the page; a page of the
    /// other bundle is loaded instead (links to it come here too).
    pub fn push(location: Location, href: &str) {
        let path = href.split(['?', '#']).next().unwrap_or_default();
        let Ok(history) = window().history() else {
            return;
        };
        if !super::Page::of(path).in_this_bundle() {
            let _ = window().location().set_href(href);
            return;
        }
        if history
            .push_state_with_url(&JsValue::NULL, "", Some(href))
            .is_err()
        {
            // Not a URL of this origin: the browser goes there itself.
            let _ = window().location().set_href(href);
            return;
        }
        let (path, query) = super::current();
        location.set(path, query);
        window().scroll_to_with_x_and_y(0.0, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_page() {
        for (path, page) in [
            ("/", Page::Home),
            ("", Page::Home),
            ("/signin", Page::SignIn),
            ("/signin/", Page::NotFound),
            ("/dashboard", Page::Dashboard),
            ("/rooms/general", Page::Room),
            ("/rooms/general/", Page::NotFound),
            ("/rooms/", Page::NotFound),
            ("/rooms", Page::NotFound),
            ("/rooms/a/b", Page::NotFound),
            ("/signin/x", Page::NotFound),
            ("/nope", Page::NotFound),
            ("//", Page::NotFound),
        ] {
            assert_eq!(Page::of(path), page, "{path}");
        }
    }

    #[test]
    fn the_readers_bundle_has_the_pages_people_chat_in() {
        for page in [Page::Home, Page::Room, Page::NotFound] {
            assert_eq!(page.bundle(), Bundle::Readers, "{page:?}");
        }
        for page in [Page::SignIn, Page::Dashboard] {
            assert_eq!(page.bundle(), Bundle::Full, "{page:?}");
        }
        assert_ne!(Bundle::Readers.name(), Bundle::Full.name());
        assert_ne!(Bundle::Readers.hash_file(), Bundle::Full.hash_file());
    }

    #[test]
    fn the_room_is_read_from_its_path_and_decoded() {
        assert_eq!(room_of("/rooms/general").as_deref(), Some("general"));
        assert_eq!(room_of("/rooms/book-club").as_deref(), Some("book-club"));
        assert_eq!(room_of("/rooms/book-club/"), None);
        assert_eq!(room_of("/rooms/a%20b").as_deref(), Some("a b"));
        assert_eq!(room_of("/rooms/a+b").as_deref(), Some("a+b"));
        assert_eq!(room_of("/rooms/%zz").as_deref(), Some("%zz"));
        assert_eq!(room_of("/rooms/%E2%82%AC").as_deref(), Some("€"));
        assert_eq!(room_of("/rooms/%FF").as_deref(), Some("\u{FFFD}"));
        assert_eq!(room_of("/rooms/"), None);
        assert_eq!(room_of("/room/general"), None);
    }

    #[test]
    fn query_values_are_decoded_as_forms_encode_them() {
        let query = "next=%2Frooms%2Fgeneral&error=name+taken%21&form=sign_in&empty=&bare";
        assert_eq!(
            query_value(query, "next").as_deref(),
            Some("/rooms/general")
        );
        assert_eq!(query_value(query, "error").as_deref(), Some("name taken!"));
        assert_eq!(query_value(query, "form").as_deref(), Some("sign_in"));
        assert_eq!(query_value(query, "empty").as_deref(), Some(""));
        assert_eq!(query_value(query, "bare").as_deref(), Some(""));
        assert_eq!(query_value(query, "missing"), None);
        assert_eq!(query_value("", "next"), None);
        assert_eq!(query_value("a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(query_value("n%65xt=x", "next").as_deref(), Some("x"));
    }
}
