//! Workers over HTTP, for backends that do not hold a WebSocket: with an API key,
//! `POST /api/jobs/claim {channel, group, count?}` takes up to `count` (1–100, default 1)
//! jobs of the group (200 `{"jobs": [{id, data, attempt}]}`, empty when there are none), and
//! `POST /api/jobs/done {channel, group, id}` finishes one (200 `{"done": true}`, or 404
//! `unknown_job` when it is not pending: done already, trimmed, or never given). A job not
//! done within the namespace's `ack_timeout` is given again, as it is to WebSocket workers.
//! Claims are made as the consumer `api:<key name>`.

use crate::http::{api_key_name, parse_body, ApiError, ApiResult};
use crate::state::AppState;
use app::protocol::ErrorCode;
use app::validate::{self, MessageId};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use serde::Deserialize;
use serde_json::json;

/// Most jobs one claim takes.
pub const CLAIM_MAX: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Claim {
    channel: String,
    group: String,
    #[serde(default)]
    count: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Done {
    channel: String,
    group: String,
    id: String,
}

fn bad(invalid: validate::Invalid) -> ApiError {
    ApiError::bad_request(invalid.code, invalid.reason)
}

/// The queue's rules, or 400 `not_a_queue`.
fn queue(state: &AppState, channel: &str) -> Result<crate::engine::QueueRules, ApiError> {
    state
        .namespaces()
        .may_publish_as_server(channel)
        .map_err(bad)?;
    state.namespaces().queue(channel).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::NotAQueue,
            format!("“{channel}” is not in a queue namespace"),
        )
    })
}

pub async fn claim(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let key = api_key_name(&state, &headers)?;
    let request: Claim = parse_body(&body)?;
    let rules = queue(&state, &request.channel)?;
    let group = validate::channel(&request.group).map_err(bad)?;
    let count = request.count.unwrap_or(1);
    if !(1..=CLAIM_MAX).contains(&count) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMessage,
            format!("count is 1 to {CLAIM_MAX}"),
        ));
    }
    let jobs = state
        .node()
        .claim_jobs(&request.channel, group, &format!("api:{key}"), count, rules)
        .await
        .map_err(unavailable)?;
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|job| json!({"id": job.id.to_string(), "data": job.data, "attempt": job.attempt}))
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

pub async fn done(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    api_key_name(&state, &headers)?;
    let request: Done = parse_body(&body)?;
    queue(&state, &request.channel)?;
    let group = validate::channel(&request.group).map_err(bad)?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownJob.as_str(),
            format!(
                "no pending job “{}” in {group}",
                validate::truncate(&request.id)
            ),
        )
    };
    let id = MessageId::parse(&request.id).map_err(|_| unknown())?;
    let acked = state
        .node()
        .ack_job(&request.channel, group, id)
        .await
        .map_err(unavailable)?;
    if !acked {
        return Err(unknown());
    }
    Ok(Json(json!({ "done": true })).into_response())
}

fn unavailable(err: crate::engine::EngineError) -> ApiError {
    tracing::warn!(error = %err, "job API: engine unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable.as_str(),
        "the service is unavailable; try again",
    )
}
