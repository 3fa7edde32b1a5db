//! The pages: home (name, rooms), a room (history, live chat, members), and the account
//! page (sign in, create an account).

mod account;
mod dashboard;
mod home;
mod room;

pub use account::AccountPage;
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
