//! Calling a server function ([`run`]): its body where the page is rendered on the server, a
//! `fetch` POST to it from the browser.
//!
//! Why not the call `#[server]` generates for the browser: it goes through `server_fn`'s
//! general client (requests and responses as `http` types over `gloo-net`, a `serde_qs` form
//! encoder, streaming bodies, redirects, errors carried in the URL), which was 9.4 KB of the
//! readers' WASM with Brotli (README, "First load"). Confab's server functions take strings
//! and answer JSON, which takes this module's few lines: the arguments as a form, which is
//! what their input encoding (`PostUrl`) reads; the answer as [`PageJson`]; a refusal as
//! the server function's error text ([`refusal`]).
//!
//! [`PageJson`]: crate::page_json::PageJson

use leptos::prelude::ServerFnError;
use leptos::server_fn::ServerFn;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs server function `S` with `args`: on the server, its body; in the browser, a POST to
/// its path. Either way it answers what the function returned.
pub async fn run<S>(args: S) -> Result<S::Output, ServerFnError>
where
    S: ServerFn<Error = ServerFnError> + Serialize,
    S::Output: DeserializeOwned,
{
    #[cfg(feature = "ssr")]
    {
        args.run_body().await
    }
    #[cfg(not(feature = "ssr"))]
    {
        // A browser's `fetch` is not `Send`; resources and actions want a future that is.
        // There is one thread in the browser, so it never moves.
        send_wrapper::SendWrapper::new(browser::post(args)).await
    }
}

/// The name a form posting to server function `S` goes by: the last part of its path
/// (`/fn/sign_in` → `sign_in`). The server's no-JavaScript handling names the form it
/// refuses the same way, from the path it was posted to (`?form=sign_in`).
pub fn form_name<S: ServerFn>() -> &'static str {
    S::PATH.rsplit('/').next().unwrap_or(S::PATH)
}

/// What a refusal says when its body is not a server function's error that can be shown: an
/// empty answer, a proxy's error page, the JSON error of a malformed call, an overlong text.
pub const UNREADABLE_REFUSAL: &str = "the request could not be completed";

/// The header a server function's refusal carries its [`ErrorCode`] in (as well as its
/// text in the body), so that a form posted without JavaScript can be sent back to its page
/// with the code alone in the URL.
///
/// [`ErrorCode`]: crate::protocol::ErrorCode
pub const REFUSAL_CODE_HEADER: &str = "x-confab-refusal";

/// What a form shows for a refusal named by its code in the page's URL (a post without
/// JavaScript came back refused). Only these texts: whatever else a URL says is never shown,
/// so a link cannot put words of its own on one of our pages.
pub fn refusal_text(code: &str) -> &'static str {
    use crate::protocol::ErrorCode as Code;
    let Some(code) = Code::parse(code) else {
        return UNREADABLE_REFUSAL;
    };
    match code {
        Code::InvalidUsername => {
            "a username has 3 to 32 characters: letters A–Z, digits, _ and -, starting with a letter or digit"
        }
        Code::InvalidPassword => "a password has 8 to 128 characters and is not the username",
        Code::UsernameTaken => "that name is taken: pick another",
        Code::InvalidCredentials => "wrong username or password",
        Code::RateLimited => "too many attempts: wait a little and try again",
        Code::Unavailable => "the chat service is unavailable, try again shortly",
        Code::NotAuthenticated => "sign in first",
        Code::EmptyContent => "the message is empty",
        Code::ContentTooLong => "the message is too long",
        Code::InvalidContent => {
            "the message holds control characters (only newline and tab are allowed)"
        }
        Code::InvalidRoom => {
            "a room name is 1 to 64 of a–z, 0–9, - and _, starting with a letter or digit"
        }
        Code::InvalidMessage => "that name cannot be used: 1 to 32 characters, no control characters",
        Code::ForbiddenOrigin => "this request must come from the chat's own pages",
        _ => UNREADABLE_REFUSAL,
    }
}

/// Longest refusal (in bytes) shown as it is: it goes into a page's URL without JavaScript.
const REFUSAL_MAX_BYTES: usize = 300;

/// What a server function's refusal says, from its body: `server_fn` writes an error as
/// `<kind>|<text>` (`ServerError|room names are 1–64 characters`). `None` for any other
/// body, and for an empty or overlong text ([`UNREADABLE_REFUSAL`] is what to show then).
pub fn refusal(body: &str) -> Option<&str> {
    let (kind, why) = body.split_once('|')?;
    let why = why.trim();
    let is_kind = !kind.is_empty() && kind.bytes().all(|byte| byte.is_ascii_alphanumeric());
    (is_kind && !why.is_empty() && why.len() <= REFUSAL_MAX_BYTES).then_some(why)
}

/// `args` as a form (`application/x-www-form-urlencoded`): each field of the struct, a
/// missing (`None`) one left out. Confab's server functions take strings; a number
/// or a flag is written as JSON writes it.
pub fn form_body<S: Serialize>(args: &S) -> Result<String, ServerFnError> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(args) else {
        return Err(ServerFnError::Serialization(
            "a server function's arguments are not a struct".into(),
        ));
    };
    let mut body = String::new();
    for (name, value) in fields {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        if !body.is_empty() {
            body.push('&');
        }
        percent_encode(&name, &mut body);
        body.push('=');
        percent_encode(&text, &mut body);
    }
    Ok(body)
}

/// Appends `text` with every byte but letters, digits and `-_.~` as `%XX`.
fn percent_encode(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xF)] as char);
        }
    }
}

#[cfg(not(feature = "ssr"))]
mod browser {
    use super::{form_body, refusal, UNREADABLE_REFUSAL};
    use leptos::prelude::ServerFnError;
    use leptos::server_fn::ServerFn;
    use leptos::wasm_bindgen::{JsCast, JsValue};
    use leptos::web_sys::{Headers, RequestInit, Response};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use wasm_bindgen_futures::JsFuture;

    /// POSTs `args` to server function `S` and reads its answer.
    pub async fn post<S>(args: S) -> Result<S::Output, ServerFnError>
    where
        S: ServerFn + Serialize,
        S::Output: DeserializeOwned,
    {
        let (status, text) = match fetch(S::PATH, &form_body(&args)?).await {
            Ok(answer) => answer,
            Err(err) => return Err(ServerFnError::Request(describe(&err))),
        };
        if (200..300).contains(&status) {
            crate::page_json::decode(text.as_bytes())
                .map_err(|err| ServerFnError::Deserialization(err.to_string()))
        } else {
            Err(ServerFnError::ServerError(refusal(&text).map_or_else(
                || format!("{UNREADABLE_REFUSAL} (HTTP {status})"),
                str::to_string,
            )))
        }
    }

    /// The answer's status and body.
    async fn fetch(path: &str, form: &str) -> Result<(u16, String), JsValue> {
        let headers = Headers::new()?;
        headers.set("Content-Type", "application/x-www-form-urlencoded")?;
        headers.set("Accept", "application/json")?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_body(&JsValue::from_str(form));
        let response: Response =
            JsFuture::from(leptos::prelude::window().fetch_with_str_and_init(path, &init))
                .await?
                .unchecked_into();
        let text = JsFuture::from(response.text()?).await?;
        Ok((response.status(), text.as_string().unwrap_or_default()))
    }

    /// A failed `fetch` in words (a `TypeError` such as "Failed to fetch").
    fn describe(err: &JsValue) -> String {
        err.dyn_ref::<js_sys::Error>()
            .map(|err| String::from(err.message()))
            .unwrap_or_else(|| "the request failed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Args {
        room: String,
        before: Option<String>,
        name: String,
        count: u32,
    }

    /// The form's fields, in any order.
    fn fields(form: &str) -> Vec<&str> {
        let mut fields: Vec<&str> = form.split('&').collect();
        fields.sort_unstable();
        fields
    }

    #[test]
    fn arguments_are_a_form_of_their_fields() {
        let args = Args {
            room: "general".into(),
            before: None,
            name: "Ana Maria & co=1 ü/?".into(),
            count: 3,
        };
        assert_eq!(
            fields(&form_body(&args).unwrap()),
            [
                "count=3",
                "name=Ana%20Maria%20%26%20co%3D1%20%C3%BC%2F%3F",
                "room=general"
            ]
        );
        let args = Args {
            before: Some("1700000000000-0".into()),
            ..args
        };
        assert!(fields(&form_body(&args).unwrap()).contains(&"before=1700000000000-0"));
    }

    #[test]
    fn only_a_struct_is_a_form() {
        assert!(form_body(&"just a string").is_err());
        assert!(form_body(&vec![1, 2]).is_err());
    }

    #[test]
    fn a_form_is_named_after_its_server_functions_endpoint() {
        use crate::api::{PostMessage, SignIn, StartGuestSession};
        assert_eq!(form_name::<SignIn>(), "sign_in");
        assert_eq!(form_name::<PostMessage>(), "post_message");
        assert_eq!(form_name::<StartGuestSession>(), "start_guest_session");
        // What the server strips its prefix from.
        assert_eq!(SignIn::PATH, "/fn/sign_in");
    }

    #[test]
    fn a_refusal_is_the_text_after_the_kind() {
        assert_eq!(
            refusal("ServerError|room names are 1–64 characters"),
            Some("room names are 1–64 characters")
        );
        assert_eq!(refusal("ServerError|a | b"), Some("a | b"));
        assert_eq!(
            refusal("Args| missing field `room`\n"),
            Some("missing field `room`")
        );
        let longest = "x".repeat(REFUSAL_MAX_BYTES);
        assert_eq!(
            refusal(&format!("ServerError|{longest}")),
            Some(longest.as_str())
        );
    }

    #[test]
    fn any_other_answer_is_no_refusal_to_show() {
        for body in [
            "",
            "plain text",
            "ServerError|",
            "ServerError|   ",
            "|no kind",
            // The JSON API's error, for a malformed call (`server::middleware`).
            r#"{"code":"invalid_message","error":"bad request to a server function: a|b"}"#,
            // A proxy's error page.
            "<html><body><h1>502 Bad Gateway</h1> nginx | upstream</body></html>",
        ] {
            assert_eq!(refusal(body), None, "{body:?}");
        }
        let overlong = format!("ServerError|{}", "x".repeat(REFUSAL_MAX_BYTES + 1));
        assert_eq!(refusal(&overlong), None);
    }
}
