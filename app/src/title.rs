//! The tab's title: the page's name, with the reader's unread count in front
//! ("(3) #general · Confab").
//!
//! Why not `leptos_meta`'s `<Title>`: Confab's title depends only on the path and the
//! unread count. The server writes it into the page's `<head>` ([`of_page`]) and the browser
//! keeps `document.title` current ([`follow`]). `leptos_meta`'s general machinery (any head
//! tag from any component, its marker in the streamed head) was 3.5 KB of the readers' WASM
//! with Brotli, and its `<Title>` followed by elements once broke hydration of the optimized
//! WASM (README, "First load").

use crate::protocol::UNREAD_COUNT_MAX;
use crate::routing::{room_of, Page};

/// The title of the page at `path`, without the unread count.
pub fn of_page(path: &str) -> String {
    match Page::of(path) {
        Page::Room => format!("#{} · Confab", room_of(path).unwrap_or_default()),
        Page::SignIn => "Sign in · Confab".to_string(),
        Page::Dashboard => "Dashboard · Confab".to_string(),
        Page::Home => "Confab".to_string(),
        Page::NotFound => "Not found · Confab".to_string(),
    }
}

/// `title` as the text of an HTML `<title>`: the room in it comes from the address, so `&`
/// and `<` are escaped (the only characters that mean something there).
pub fn escaped(title: &str) -> String {
    title.replace('&', "&amp;").replace('<', "&lt;")
}

/// `title` with the unread count in front, when there is any ("99+" from
/// [`UNREAD_COUNT_MAX`] on, as in the sidebar).
pub fn with_unread(title: String, unread: u32) -> String {
    match unread {
        0 => title,
        n if n >= UNREAD_COUNT_MAX => format!("(99+) {title}"),
        n => format!("({n}) {title}"),
    }
}

/// Keeps `document.title` at the current page's title and the unread count.
#[cfg(feature = "hydrate")]
pub fn follow(location: crate::routing::Location, unread: impl Fn() -> u32 + 'static) {
    use leptos::prelude::{document, Effect, With};
    Effect::new(move |_| {
        let title = with_unread(location.path.with(|path| of_page(path)), unread());
        if document().title() != title {
            document().set_title(&title);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_its_title() {
        for (path, title) in [
            ("/", "Confab"),
            ("/rooms/general", "#general · Confab"),
            ("/rooms/caf%C3%A9", "#café · Confab"),
            ("/signin", "Sign in · Confab"),
            ("/dashboard", "Dashboard · Confab"),
            ("/nowhere", "Not found · Confab"),
            ("/rooms/a/b", "Not found · Confab"),
        ] {
            assert_eq!(of_page(path), title, "{path}");
        }
    }

    #[test]
    fn a_title_cannot_close_its_element() {
        assert_eq!(
            escaped(&of_page("/rooms/%3C%2Ftitle%3E%3Cscript%3E&amp")),
            "#&lt;/title>&lt;script>&amp;amp · Confab"
        );
    }

    #[test]
    fn the_unread_count_goes_in_front_up_to_99() {
        let title = || "#general · Confab".to_string();
        assert_eq!(with_unread(title(), 0), "#general · Confab");
        assert_eq!(with_unread(title(), 1), "(1) #general · Confab");
        assert_eq!(with_unread(title(), 99), "(99) #general · Confab");
        assert_eq!(
            with_unread(title(), UNREAD_COUNT_MAX),
            "(99+) #general · Confab"
        );
    }
}
