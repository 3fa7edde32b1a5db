//! Confab's shared crate: the wire protocol, validation rules, server functions and the
//! Leptos UI. Compiled twice: with `ssr` into the server, with `hydrate` into the WASM.
//!
//! # Layout
//! - [`protocol`]: WebSocket messages, error codes, close codes (both sides);
//!   [`server_events`]: the browser's compact decoder for the server's events.
//! - [`validate`]: room ids, names, content, message ids (both sides).
//! - [`api`]: `#[server]` functions the pages load through; [`server_call`]: how they are
//!   called (their body on the server, a POST from the browser).
//! - [`markdown`]: the safe subset of Markdown messages are written in.
//! - [`mention`]: what `@name` means, for the server's counts and the browser's highlights.
//! - [`chat`]: the room page's state and how server events change it.
//! - `backend` (ssr): the trait through which server functions reach the server's engine.
//! - [`pages`]: the home page, the room page and the account page; `components`: their parts.
//! - [`unread`]: the room list's unread and mention counts; [`workspace`]: the reader's rooms,
//!   connection state and open rooms, provided to every page; `sidebar`: the room list.
//! - `live` (hydrate): the browser's one WebSocket for every room, with reconnect and resume.
//! - `notify` (hydrate): browser notifications for mentions while the tab is hidden.
//! - [`routing`]: which page a path shows, and moving between pages in place.
//! - [`title`]: the tab's title, with the unread count.
//! - `kept` (hydrate): unconfirmed messages kept in browser storage across reloads.

pub mod api;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod chat;
mod components;
#[cfg(feature = "hydrate")]
mod kept;
#[cfg(feature = "hydrate")]
mod live;
pub mod markdown;
pub mod mention;
#[cfg(feature = "hydrate")]
mod notify;
pub mod page_json;
pub mod pages;
pub mod protocol;
#[cfg(feature = "hydrate")]
mod room_list_sync;
pub mod routing;
pub mod server_call;
pub mod server_events;
mod sidebar;
pub mod title;
pub mod unread;
pub mod validate;
pub mod workspace;

use leptos::prelude::*;
use routing::{Location, Page};

/// The Content-Security-Policy of every page: scripts only from this origin or inline with
/// this response's nonce (the hydration scripts Leptos writes carry it), WebAssembly
/// compiled from our own bundle, network only to this origin (its WebSocket included),
/// styles and images only our own, no plugins, no `<base>`, forms only to us, and no framing
/// by anyone (clickjacking). `cargo leptos watch` also needs its reload socket. The server's
/// security-headers layer sends it on every page, with the nonce it gave the page.
#[cfg(feature = "ssr")]
pub fn page_security_policy(nonce: &str, reload_port: Option<u32>) -> String {
    let reload = reload_port
        .map(|port| format!(" ws://127.0.0.1:{port} ws://localhost:{port}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{reload}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The stylesheet's address: fingerprinted (`confab.<hash>.css`) when the optimized build
/// wrote its hashes next to the server, as Leptos does for the JS and the WASM.
#[cfg(feature = "ssr")]
fn stylesheet_href(options: &LeptosOptions) -> String {
    static HREF: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HREF.get_or_init(|| {
        let hash = options
            .hash_files
            .then(|| {
                let exe = std::env::current_exe().ok()?;
                let hashes =
                    std::fs::read_to_string(exe.parent()?.join(&*options.hash_file)).ok()?;
                hashes.lines().find_map(|line| {
                    let (kind, hash) = line.split_once(':')?;
                    (kind.trim() == "css").then(|| hash.trim().to_string())
                })
            })
            .flatten();
        match hash {
            Some(hash) => format!(
                "/{}/{}.{hash}.css",
                options.site_pkg_dir, options.output_name
            ),
            None => format!("/{}/{}.css", options.site_pkg_dir, options.output_name),
        }
    })
    .clone()
}

/// The options naming the WASM bundle this page loads ([`routing::Bundle`]).
#[cfg(feature = "ssr")]
fn bundle_options(mut options: LeptosOptions) -> LeptosOptions {
    let bundle = Page::of(&routing::current().0).bundle();
    options.output_name = bundle.name().into();
    options.hash_file = bundle.hash_file().into();
    options
}

#[cfg(not(feature = "ssr"))]
fn bundle_options(options: LeptosOptions) -> LeptosOptions {
    options
}

/// The HTML document around the app (server side).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let stylesheet = stylesheet_href(&options);
    #[cfg(not(feature = "ssr"))]
    let stylesheet = String::new();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" href=stylesheet/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options=bundle_options(options.clone())/>
                <title inner_html=title::escaped(&title::of_page(&routing::current().0))></title>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    let location = Location::provide();
    let session = components::Session::provide();
    let workspace = workspace::Workspace::provide(session.ended);
    let drawer = RwSignal::new(false);
    provide_context(sidebar::Drawer(drawer));
    // Escape closes the drawer (phones).
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" && drawer.get_untracked() {
            drawer.set(false);
        }
    });
    // The tab title carries the unread count of every room: "(3) #general · Confab".
    let unread = move || workspace.rooms.with(unread::RoomList::total_unread);
    #[cfg(feature = "hydrate")]
    title::follow(location, unread);
    let page = Memo::new(move |_| location.page());
    view! { <Frame session drawer unread=Signal::derive(unread) page/> }
}

/// The top bar, the sidebar and the page, under the contexts `App` provides.
#[component]
fn Frame(
    session: components::Session,
    drawer: RwSignal<bool>,
    unread: Signal<u32>,
    page: Memo<Page>,
) -> impl IntoView {
    view! {
        <header class="topbar">
            <button
                type="button"
                class="drawer-toggle"
                aria-controls="sidebar"
                aria-expanded=move || drawer.get().to_string()
                on:click=move |_| drawer.update(|open| *open = !*open)
            >
                "Rooms"
                {move || (unread.get() > 0).then(|| view! { <span class="badge unread">{unread.get()}</span> })}
            </button>
            <a href="/" class="brand">"Confab"</a>
            <components::UserBadge session/>
        </header>
        <div class="layout">
        <sidebar::Sidebar/>
        <main>
            // A room page stays when another room is opened: it follows the path's room.
            {move || match page.get() {
                Page::Home => view! { <pages::HomePage/> }.into_any(),
                Page::SignIn => account_page(),
                Page::Dashboard => dashboard_page(),
                Page::Room => view! { <pages::RoomPage/> }.into_any(),
                Page::NotFound => view! { <pages::NotFound/> }.into_any(),
            }}
        </main>
        </div>
    }
}

/// The pages only the full bundle has ([`routing::Bundle`]), where this build has them: the
/// server and the full bundle.
#[cfg(any(feature = "ssr", feature = "full"))]
fn account_page() -> AnyView {
    view! { <pages::AccountPage/> }.into_any()
}

#[cfg(any(feature = "ssr", feature = "full"))]
fn dashboard_page() -> AnyView {
    view! { <pages::DashboardPage/> }.into_any()
}

#[cfg(not(any(feature = "ssr", feature = "full")))]
fn account_page() -> AnyView {
    loaded_with_the_full_bundle()
}

#[cfg(not(any(feature = "ssr", feature = "full")))]
fn dashboard_page() -> AnyView {
    loaded_with_the_full_bundle()
}

/// The readers' bundle does not have this page: the browser loads it, with the full bundle.
/// (Links and `navigate` already do; this is for any other way of getting here.)
#[cfg(not(any(feature = "ssr", feature = "full")))]
fn loaded_with_the_full_bundle() -> AnyView {
    #[cfg(feature = "hydrate")]
    let _ = window().location().reload();
    view! { <p class="muted">"Loading…"</p> }.into_any()
}
