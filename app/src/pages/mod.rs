//! The pages: home (name, rooms), a room (history, live chat, members), and the account
//! page (sign in, create an account).

// Only the full bundle (and the server) has these pages: see `routing::Bundle`.
#[cfg(any(feature = "ssr", feature = "full"))]
mod account;
#[cfg(any(feature = "ssr", feature = "full"))]
mod dashboard;
mod home;
mod room;

#[cfg(any(feature = "ssr", feature = "full"))]
pub use account::AccountPage;
#[cfg(any(feature = "ssr", feature = "full"))]
pub use dashboard::DashboardPage;
pub use home::HomePage;
pub use room::RoomPage;

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <section class="card">
            <h1>"Not found"</h1>
            <p>"There is nothing here. " <a href="/">"Back to the rooms"</a></p>
        </section>
    }
}
