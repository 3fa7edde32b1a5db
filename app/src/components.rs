//! UI parts shared by the pages: the session context, the user badge, the name form.

use crate::api::{current_user, error_text, SignOut, StartGuestSession};
use crate::protocol::User;
use leptos::form::ActionForm;
use leptos::prelude::*;

/// The signed-in user and the actions that change it, provided once by `App`.
#[derive(Clone, Copy)]
pub struct Session {
    pub start: ServerAction<StartGuestSession>,
    pub sign_out: ServerAction<SignOut>,
    pub user: Resource<Result<Option<User>, ServerFnError>>,
}

impl Session {
    pub fn provide() -> Self {
        let start = ServerAction::<StartGuestSession>::new();
        let sign_out = ServerAction::<SignOut>::new();
        let user = Resource::new(
            move || (start.version().get(), sign_out.version().get()),
            |_| current_user(),
        );
        let session = Session {
            start,
            sign_out,
            user,
        };
        provide_context(session);
        session
    }

    pub fn expect() -> Self {
        expect_context::<Session>()
    }

    /// Changes whenever someone signs in or out: a source for resources that depend on who you are.
    pub fn version(&self) -> (usize, usize) {
        (self.start.version().get(), self.sign_out.version().get())
    }
}

/// The header's "who am I" corner.
#[component]
pub fn UserBadge(session: Session) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match session.user.await {
                    Ok(Some(user)) => view! {
                        <div class="user-badge">
                            <span class="user-name" data-testid="me">{user.name}</span>
                            {user.guest.then(|| view! { <span class="tag">"guest"</span> })}
                            <ActionForm action=session.sign_out attr:class="inline">
                                <button type="submit" class="link">"Sign out"</button>
                            </ActionForm>
                        </div>
                    }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Transition>
    }
}

/// Choose a display name: starts (or replaces) the guest session.
#[component]
pub fn NameForm(#[prop(into)] label: String) -> impl IntoView {
    let session = Session::expect();
    let error = move || match session.start.value().get() {
        Some(Err(err)) => Some(error_text(&err)),
        _ => None,
    };
    view! {
        <ActionForm action=session.start attr:class="name-form">
            <label for="name-input">{label}</label>
            <div class="row">
                <input id="name-input" name="name" required maxlength="32" placeholder="e.g. Ana" autocomplete="nickname"/>
                <button type="submit">"Continue"</button>
            </div>
            {move || error().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </ActionForm>
    }
}
