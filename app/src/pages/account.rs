//! Sign in or create an account. Works without JavaScript too: the forms post to the server
//! functions, which answer with a redirect back here, now signed in.

use crate::components::{RegisterForm, Session, SignInForm};
use crate::routing::Location;
use leptos::prelude::*;

/// `next` if it is a path on this site (never a way off it).
fn local_next(next: Option<String>) -> Option<String> {
    next.filter(|next| next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'))
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let session = Session::expect();
    // Signed in here: back to the page the reader came from (`?next=`). Without JavaScript
    // the server's redirect does the same.
    let location = Location::expect();
    Effect::new(move |_| {
        let done = matches!(session.sign_in.value().get(), Some(Ok(_)))
            || matches!(session.register.value().get(), Some(Ok(_)));
        if let Some(next) = local_next(untrack(|| location.query_value("next"))).filter(|_| done) {
            location.navigate(&next);
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match session.user.await {
                    Ok(Some(user)) if !user.guest => view! {
                        <section class="card">
                            <h1>"Signed in"</h1>
                            <p class="signed-in" data-testid="signed-in-as">
                                "You are signed in as " <strong>{user.name}</strong> ". "
                                <a href="/">"Go to the rooms"</a>
                            </p>
                        </section>
                    }.into_any(),
                    _ => view! {
                        <section class="card">
                            <h1>"Your account"</h1>
                            <p class="lede">
                                "Sign in to keep your name. Guests can chat too, under any name that is not someone's username."
                            </p>
                            <div class="account-forms">
                                <SignInForm/>
                                <RegisterForm/>
                            </div>
                        </section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
