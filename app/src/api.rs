//! Server functions: what pages load (history, presence, rooms, the current user) and the
//! sign-in forms (guest, account sign-in, registration, sign-out). They run on the server
//! through the [`Backend`](crate::backend::Backend) provided as context, and are called over
//! HTTP from the browser. Each answers in [`PageJson`], and the pages' resources carry their
//! data into the browser in it too (see `page_json` for why).

use crate::page_json::PageJson;
use crate::protocol::{HistoryPage, Member, ReadState, RoomEntry, RoomSummary, User};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Everything a room page renders on the server: recent history, who is here, who you are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub page: HistoryPage,
    pub members: Vec<Member>,
    pub me: Option<User>,
    /// Where the reader stood when the page was made (None: not on their list yet).
    pub read: Option<ReadState>,
    /// The longest message the server accepts, in bytes (the composer counts down to it).
    pub max_content_bytes: usize,
}

/// What a page loads through a server function, carried into the browser as [`PageJson`].
pub type PageData<T> = Resource<Result<T, ServerFnError>, PageJson>;

/// Loads a page's data with `fetch` whenever `source` changes (once on the server, whose
/// result the browser takes over).
pub fn page_data<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> PageData<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, ServerFnError>> + Send + 'static,
{
    Resource::new_with_options(source, fetch, false)
}

/// The human text of a server function error, without the framework's prefix.
pub fn error_text(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(message) => message.clone(),
        other => format!("the server could not be reached ({other})"),
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::backend::{session_token, BackendError, SharedBackend};
    use crate::protocol::User;
    use leptos::prelude::*;

    pub fn backend() -> Result<SharedBackend, ServerFnError> {
        use_context::<SharedBackend>()
            .ok_or_else(|| ServerFnError::new("the chat backend is not configured"))
    }

    /// A refusal as the server function's error, answered with its HTTP status (4xx for a
    /// client's mistake, 503 when the service is down), never a blanket 500.
    pub fn to_error(err: BackendError) -> ServerFnError {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(err.status());
            let code = match &err {
                BackendError::Invalid(invalid) => invalid.code,
                BackendError::RateLimited { .. } => crate::protocol::ErrorCode::RateLimited,
                BackendError::Unavailable => crate::protocol::ErrorCode::Unavailable,
            };
            response.insert_header(
                http::HeaderName::from_static(crate::server_call::REFUSAL_CODE_HEADER),
                http::HeaderValue::from_static(code.as_str()),
            );
        }
        ServerFnError::new(err.to_string())
    }

    pub async fn token() -> Option<String> {
        let headers: http::HeaderMap = leptos_axum::extract().await.ok()?;
        session_token(&headers)
    }

    pub async fn me(backend: &SharedBackend) -> Result<Option<User>, ServerFnError> {
        match token().await {
            Some(token) => backend.user_for_token(&token).await.map_err(to_error),
            None => Ok(None),
        }
    }

    /// The signed-in user, or the refusal for a visitor.
    pub async fn signed_in(backend: &SharedBackend) -> Result<User, ServerFnError> {
        me(backend).await?.ok_or_else(|| {
            to_error(BackendError::Invalid(crate::validate::Invalid::new(
                crate::protocol::ErrorCode::NotAuthenticated,
                "sign in first",
            )))
        })
    }

    /// Who is asking, as the server's request middleware recorded it.
    pub async fn client() -> crate::backend::Client {
        let extensions: Option<http::Extensions> = leptos_axum::extract().await.ok();
        extensions
            .and_then(|extensions| extensions.get::<crate::backend::Client>().cloned())
            .unwrap_or_default()
    }

    /// The end of every sign-in: the token goes into the HttpOnly cookie, the user back to
    /// the page.
    pub fn keep_session(
        backend: &SharedBackend,
        client: &crate::backend::Client,
        signed_in: Result<(String, User), BackendError>,
    ) -> Result<User, ServerFnError> {
        let (token, user) = signed_in.map_err(to_error)?;
        set_cookie(backend.session_cookie(&token, client))?;
        Ok(user)
    }

    pub fn set_cookie(value: String) -> Result<(), ServerFnError> {
        let value =
            http::HeaderValue::from_str(&value).map_err(|_| ServerFnError::new("bad cookie"))?;
        expect_context::<leptos_axum::ResponseOptions>()
            .append_header(http::header::SET_COOKIE, value);
        Ok(())
    }
}

/// The signed-in user, if any.
/// Who may see the live dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clearance {
    SignedOut,
    /// Signed in, but not as an operator (`--operators`).
    NotOperator,
    Operator,
}

#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "dashboard_access")]
pub async fn dashboard_access() -> Result<Clearance, ServerFnError> {
    let backend = ssr::backend()?;
    Ok(match ssr::me(&backend).await? {
        None => Clearance::SignedOut,
        Some(user) if backend.is_operator(&user) => Clearance::Operator,
        Some(_) => Clearance::NotOperator,
    })
}

#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "current_user")]
pub async fn current_user() -> Result<Option<User>, ServerFnError> {
    let backend = ssr::backend()?;
    ssr::me(&backend).await
}

/// Starts a guest session under `name` and stores its token in an HttpOnly cookie.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "start_guest_session")]
pub async fn start_guest_session(name: String) -> Result<User, ServerFnError> {
    let backend = ssr::backend()?;
    let client = ssr::client().await;
    let signed_in = backend.create_guest(&name, &client).await;
    ssr::keep_session(&backend, &client, signed_in)
}

/// Signs in to an account and stores the session in the HttpOnly cookie.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "sign_in")]
pub async fn sign_in(username: String, password: String) -> Result<User, ServerFnError> {
    let backend = ssr::backend()?;
    let client = ssr::client().await;
    let signed_in = backend.sign_in(&username, &password, &client).await;
    ssr::keep_session(&backend, &client, signed_in)
}

/// Creates an account, signs it in and stores the session in the HttpOnly cookie.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "register")]
pub async fn register(username: String, password: String) -> Result<User, ServerFnError> {
    let backend = ssr::backend()?;
    let client = ssr::client().await;
    let signed_in = backend.register(&username, &password, &client).await;
    ssr::keep_session(&backend, &client, signed_in)
}

/// Ends the session and removes the cookie.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), ServerFnError> {
    let backend = ssr::backend()?;
    if let Some(token) = ssr::token().await {
        backend.end_session(&token).await.map_err(ssr::to_error)?;
    }
    ssr::set_cookie(backend.clear_session_cookie())
}

/// What a room page shows before any live update.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "load_room")]
pub async fn load_room(room: String) -> Result<RoomSnapshot, ServerFnError> {
    let backend = ssr::backend()?;
    let client = ssr::client().await;
    let page = backend
        .history_page(&room, None, &client)
        .await
        .map_err(ssr::to_error)?;
    let members = backend.members(&room).await.map_err(ssr::to_error)?;
    let me = ssr::me(&backend).await?;
    let read = match &me {
        Some(me) => backend
            .room_read_state(me, &room)
            .await
            .map_err(ssr::to_error)?,
        None => None,
    };
    Ok(RoomSnapshot {
        page,
        members,
        me,
        read,
        max_content_bytes: backend.max_content_bytes(),
    })
}

/// The signed-in user's rooms (the sidebar), with unread and mention counts; none for a
/// visitor who has not signed in.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "my_rooms")]
pub async fn my_rooms() -> Result<Vec<RoomEntry>, ServerFnError> {
    let backend = ssr::backend()?;
    match ssr::me(&backend).await? {
        Some(me) => backend.rooms_of(&me).await.map_err(ssr::to_error),
        None => Ok(Vec::new()),
    }
}

/// Posts a message from the composer's form when JavaScript is off (with JavaScript the page
/// sends over its live connection instead).
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "post_message")]
pub async fn post_message(room: String, content: String) -> Result<(), ServerFnError> {
    let backend = ssr::backend()?;
    let me = ssr::signed_in(&backend).await?;
    backend
        .post_message(&me, &room, &content)
        .await
        .map(|_| ())
        .map_err(ssr::to_error)
}

/// Takes a room off the signed-in user's list.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "leave_room")]
pub async fn leave_room(room: String) -> Result<(), ServerFnError> {
    let backend = ssr::backend()?;
    let me = ssr::signed_in(&backend).await?;
    backend.unfollow(&me, &room).await.map_err(ssr::to_error)
}

/// Older messages, for scrolling back.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "older_messages")]
pub async fn older_messages(
    room: String,
    before: Option<String>,
) -> Result<HistoryPage, ServerFnError> {
    let backend = ssr::backend()?;
    let client = ssr::client().await;
    backend
        .history_page(&room, before.as_deref(), &client)
        .await
        .map_err(ssr::to_error)
}

/// Who is present in a room.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "room_members")]
pub async fn room_members(room: String) -> Result<Vec<Member>, ServerFnError> {
    let backend = ssr::backend()?;
    backend.members(&room).await.map_err(ssr::to_error)
}

/// Rooms with history or people in them, busiest first.
#[server(prefix = "/fn", output = crate::page_json::PageOutput, endpoint = "list_rooms")]
pub async fn list_rooms() -> Result<Vec<RoomSummary>, ServerFnError> {
    let backend = ssr::backend()?;
    backend.rooms().await.map_err(ssr::to_error)
}
