//! Sign in or create an account. Works without JavaScript too: the forms post to the server
//! functions, which answer with a redirect back here, now signed in.
//!
//! Only the full bundle has this page (`routing::Bundle`): its actions are its own, and it
//! tells the app's [`Session`] when someone signed in.

use crate::api::{Register, SignIn};
use crate::components::{failure, form_error, submitted, ServerCall, Session};
use crate::protocol::User;
use crate::routing::Location;
use crate::server_call::run;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// `next` if it is a path on this site (never a way off it).
fn local_next(next: Option<String>) -> Option<String> {
    next.filter(|next| next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'))
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let session = Session::expect();
    let sign_in = Action::new(|form: &SignIn| run(form.clone()));
    let register = Action::new(|form: &Register| run(form.clone()));
    // Signed in here: the app learns who you are now, and goes back to the page the reader
    // came from (`?next=`). Without JavaScript the server's redirect does the same.
    let location = Location::expect();
    Effect::new(move |_| {
        let done = matches!(sign_in.value().get(), Some(Ok(_)))
            || matches!(register.value().get(), Some(Ok(_)));
        if !done {
            return;
        }
        session.signed_in.update(|n| *n += 1);
        if let Some(next) = local_next(untrack(|| location.query_value("next"))) {
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
                                <SignInForm sign_in/>
                                <RegisterForm register/>
                            </div>
                        </section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// Sign in to an existing account.
#[component]
fn SignInForm(sign_in: ServerCall<SignIn, User>) -> impl IntoView {
    view! {
        <AccountForm
            action=sign_in
            credentials=|username, password| SignIn { username, password }
            testid="sign-in-form"
            heading="Sign in"
        >
            <label for="signin-username">"Username"</label>
            <input id="signin-username" name="username" required minlength="3" maxlength="32" autocomplete="username"/>
            <label for="signin-password">"Password"</label>
            <input id="signin-password" name="password" type="password" required autocomplete="current-password"/>
            <button type="submit">"Sign in"</button>
        </AccountForm>
    }
}

/// Create an account (and sign it in).
#[component]
fn RegisterForm(register: ServerCall<Register, User>) -> impl IntoView {
    view! {
        <AccountForm
            action=register
            credentials=|username, password| Register { username, password }
            testid="register-form"
            heading="Create an account"
        >
            <label for="register-username">"Username"</label>
            <input
                id="register-username"
                name="username"
                required
                minlength="3"
                maxlength="32"
                pattern="[A-Za-z0-9][A-Za-z0-9_\\-]*"
                title="3–32 letters, digits, _ and -, starting with a letter or digit"
                autocomplete="username"
            />
            <label for="register-password">"Password"</label>
            <input
                id="register-password"
                name="password"
                type="password"
                required
                minlength="8"
                maxlength="128"
                autocomplete="new-password"
            />
            <p class="hint">"At least 8 characters. Your username is how others see you."</p>
            <button type="submit">"Create account"</button>
        </AccountForm>
    }
}

/// What both account forms share: without JavaScript the form posts to server function `S`
/// (whose refusal the server puts in the URL under the function's name); with it, the form
/// dispatches `action` with the username and password typed. Either way the refusal shows
/// under the fields (`children`).
#[component]
fn AccountForm<S>(
    action: ServerCall<S, User>,
    credentials: fn(String, String) -> S,
    testid: &'static str,
    heading: &'static str,
    children: Children,
) -> impl IntoView
where
    S: ServerFn + Send + Sync + 'static,
{
    let error = form_error::<S>(move || failure(action.value().get()));
    view! {
        <form
            class="account-form"
            data-testid=testid
            method="post"
            action=S::PATH
            on:submit=move |ev| {
                ev.prevent_default();
                action.dispatch(credentials(submitted(&ev, "username"), submitted(&ev, "password")));
            }
        >
            <h2>{heading}</h2>
            {children()}
            {move || error().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </form>
    }
}
