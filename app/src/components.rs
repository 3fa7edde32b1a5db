//! UI parts shared by the pages: the session context, the user badge, the name form and
//! the room form. (The account forms are the account page's.)

use crate::api::{error_text, CurrentUser, SignOut, StartGuestSession};
use crate::protocol::User;
use crate::routing::Location;
use crate::server_call::{form_name, refusal_text, run};
use crate::validate::room_name_to_id;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// An action that calls a server function ([`run`]). Not Leptos's `ServerAction`: that one
/// calls through `server_fn`'s client and reads an error Leptos's own no-JavaScript redirect
/// puts in the URL (`?__err=`), where Confab's forms report theirs as `?error=…&form=…`
/// ([`refusal_in_url`]).
pub type ServerCall<S, T> = Action<S, Result<T, ServerFnError>>;

/// The signed-in user and the actions that change it, provided once by `App`.
///
/// Signing in to an account is the account page's (`pages::account`): only the full bundle
/// has it (`routing::Bundle`), and it tells the session through `signed_in`.
#[derive(Clone, Copy)]
pub struct Session {
    pub start: ServerCall<StartGuestSession, User>,
    pub sign_out: ServerCall<SignOut, ()>,
    /// Bumped when the account page signed someone in (or registered them).
    pub signed_in: RwSignal<usize>,
    /// Bumped when the server ended the session on its own (signed out in another tab).
    pub ended: RwSignal<usize>,
    pub user: crate::api::PageData<Option<User>>,
}

impl Session {
    pub fn provide() -> Self {
        let start = Action::new(|form: &StartGuestSession| run(form.clone()));
        let sign_out = Action::new(|form: &SignOut| run(form.clone()));
        let signed_in = RwSignal::new(0);
        let ended = RwSignal::new(0);
        let version = move || versions(start, sign_out, signed_in, ended);
        let session = Session {
            start,
            sign_out,
            signed_in,
            ended,
            user: crate::api::page_data(version, |_| run(CurrentUser {})),
        };
        provide_context(session);
        session
    }

    pub fn expect() -> Self {
        expect_context::<Session>()
    }

    /// Changes whenever someone signs in or out: a source for resources that depend on who you are.
    pub fn version(&self) -> [usize; 4] {
        versions(self.start, self.sign_out, self.signed_in, self.ended)
    }
}

/// [`Session::version`] from its parts: `provide` needs it before the session exists (for
/// who the user is).
fn versions(
    start: ServerCall<StartGuestSession, User>,
    sign_out: ServerCall<SignOut, ()>,
    signed_in: RwSignal<usize>,
    ended: RwSignal<usize>,
) -> [usize; 4] {
    [
        start.version().get(),
        sign_out.version().get(),
        signed_in.get(),
        ended.get(),
    ]
}

/// The text of an action's last result, if it failed.
pub(crate) fn failure<T>(result: Option<Result<T, ServerFnError>>) -> Option<String> {
    match result {
        Some(Err(err)) => Some(error_text(&err)),
        _ => None,
    }
}

/// Why the form posting to server function `S` was refused, when the page came back from a
/// post without JavaScript (`?error=<code>&form=…`, set by the server; see [`form_name`]):
/// the text of our own for that code ([`refusal_text`]), never words from the URL.
pub fn refusal_in_url<S: ServerFn>() -> impl Fn() -> Option<String> + Copy {
    let location = Location::expect();
    let function = form_name::<S>();
    move || {
        (location.query_value("form").as_deref() == Some(function))
            .then(|| location.query_value("error"))
            .flatten()
            .map(|code| refusal_text(&code).to_string())
    }
}

/// The error of the form posting to server function `S`: from its last submission here
/// (`last`), or from the URL after a post without JavaScript.
pub(crate) fn form_error<S: ServerFn>(
    last: impl Fn() -> Option<String> + Copy,
) -> impl Fn() -> Option<String> + Copy {
    let in_url = refusal_in_url::<S>();
    move || last().or_else(in_url)
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
                            <span class="user-name" data-testid="me" title=user.name.clone()>{user.name.clone()}</span>
                            {user.guest.then(|| view! { <span class="tag">"guest"</span> })}
                            <form
                                class="inline"
                                method="post"
                                action=SignOut::PATH
                                on:submit=move |ev| {
                                    ev.prevent_default();
                                    session.sign_out.dispatch(SignOut {});
                                }
                            >
                                <button type="submit" class="link" data-testid="sign-out">"Sign out"</button>
                            </form>
                        </div>
                    }.into_any(),
                    _ => view! { <SignInLink/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// "Sign in", coming back to this page afterwards.
#[component]
fn SignInLink() -> impl IntoView {
    let location = Location::expect();
    let href = move || {
        let path = location.path.get();
        if path == "/signin" || path == "/" {
            "/signin".to_string()
        } else {
            let mut query = String::from("/signin?next=");
            query.extend(url_escape(&path));
            query
        }
    };
    view! { <a href=href class="user-badge" data-testid="sign-in-link">"Sign in"</a> }
}

/// Percent-encodes what a path may hold that a query value may not.
fn url_escape(text: &str) -> impl Iterator<Item = String> + '_ {
    text.bytes().map(|b| match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
            (b as char).to_string()
        }
        other => format!("%{other:02X}"),
    })
}

/// A field of the form being submitted, as the browser would post it.
///
/// The session forms post to their server function without JavaScript (the server answers
/// with a redirect back) and dispatch their action with these fields once hydrated. Leptos's
/// `ActionForm` does the same through a generic form-data decoder (`serde_qs`) and generic
/// code per form; reading the fields by name took 18 KB (Brotli) off the WASM every page
/// loads.
pub(crate) fn submitted(ev: &leptos::ev::SubmitEvent, name: &str) -> String {
    use leptos::wasm_bindgen::JsCast;
    ev.target()
        .and_then(|target| target.dyn_into::<leptos::web_sys::HtmlFormElement>().ok())
        .and_then(|form| leptos::web_sys::FormData::new_with_form(&form).ok())
        .and_then(|data| data.get(name).as_string())
        .unwrap_or_default()
}

/// Choose a display name: starts (or replaces) the guest session.
#[component]
pub fn NameForm(#[prop(into)] label: String) -> impl IntoView {
    let session = Session::expect();
    let error = form_error::<StartGuestSession>(move || failure(session.start.value().get()));
    view! {
        <form
            class="name-form"
            method="post"
            action=StartGuestSession::PATH
            on:submit=move |ev| {
                ev.prevent_default();
                session.start.dispatch(StartGuestSession { name: submitted(&ev, "name") });
            }
        >
            <label for="name-input">{label}</label>
            <div class="row">
                <input id="name-input" name="name" required maxlength="32" placeholder="e.g. Ana" autocomplete="nickname"/>
                <button type="submit">"Continue"</button>
            </div>
            {move || error().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </form>
    }
}

/// Turns a typed name into a room id and goes there, or says what is wrong with it.
#[component]
pub fn OpenRoomForm(
    /// The input's id (two of these forms can be on one page).
    input_id: &'static str,
    label: &'static str,
    button: &'static str,
) -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let location = Location::expect();
    let input = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // What the box holds, also when it was typed before the page was interactive (no
        // input event reached `typed` then).
        let name = input
            .get_untracked()
            .map(|input| input.value())
            .unwrap_or_else(|| typed.get_untracked());
        match room_name_to_id(&name) {
            Ok(id) => {
                error.set(None);
                location.navigate(&format!("/rooms/{id}"));
            }
            Err(invalid) => error.set(Some(invalid.reason)),
        }
    };
    view! {
        <form class="open-room" method="get" action="/open" on:submit=on_submit>
            <label for=input_id>{label}</label>
            <div class="row">
                <input
                    id=input_id
                    node_ref=input
                    name="room"
                    placeholder="e.g. general or Book Club"
                    maxlength="64"
                    prop:value=move || typed.get()
                    on:input=move |ev| {
                        typed.set(event_target_value(&ev));
                        error.set(None);
                    }
                />
                <button type="submit">{button}</button>
            </div>
            {move || error.get().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </form>
    }
}
