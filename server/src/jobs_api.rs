//! Workers over HTTP, for backends that do not hold a WebSocket: with an API key,
//! `POST /api/jobs/claim {channel, group, count?}` takes up to `count` (1–100, default 1)
//! jobs of the group (200 `{"jobs": [{id, data, attempt}]}`, empty when there are none), and
//! `POST /api/jobs/done {channel, group, id, attempt?}` finishes one (200 `{"done": true}`,
//! or 404 `unknown_job` when it is not out with this key: done already, trimmed, never given,
//! or, with `attempt`, given again since). A job not done within the namespace's
//! `ack_timeout` is given again, as it is to WebSocket workers. Claims are made as the
//! consumer `api:<key name>`; the group must be one the namespace lists (`unknown_group`).

use crate::engine::Holder;
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
    /// The delivery that is done (the claim's `attempt`): a job given again since is the
    /// other claim's to finish.
    #[serde(default)]
    attempt: Option<u32>,
}

fn bad(invalid: validate::Invalid) -> ApiError {
    ApiError::bad_request(invalid.code, invalid.reason)
}

/// The consumer a backend claims as: one per API key.
fn consumer(key: &str) -> String {
    format!("api:{key}")
}

pub async fn claim(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let key = api_key_name(&state, &headers)?;
    let request: Claim = parse_body(&body)?;
    let (channel, rules) = state
        .namespaces()
        .queue_group(&request.channel, &request.group)
        .map_err(bad)?;
    let count = request.count.unwrap_or(1);
    if !(1..=CLAIM_MAX).contains(&count) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMessage,
            format!("count is 1 to {CLAIM_MAX}"),
        ));
    }
    let jobs = state
        .node()
        .claim_jobs(channel, &request.group, &consumer(&key), count, &rules)
        .await
        .map_err(unavailable)?;
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|job| json!({"id": job.id.to_string(), "data": job.data, "attempt": job.attempt}))
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

pub async fn done(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let key = api_key_name(&state, &headers)?;
    let request: Done = parse_body(&body)?;
    let (channel, _) = state
        .namespaces()
        .queue_group(&request.channel, &request.group)
        .map_err(bad)?;
    let id = MessageId::parse(&request.id).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidMessage,
            format!("“{}” is not a job id", validate::truncate(&request.id)),
        )
    })?;
    let consumer = consumer(&key);
    let holder = Holder {
        consumer: &consumer,
        attempt: request.attempt,
    };
    let acked = state
        .node()
        .ack_job(channel, &request.group, id, holder)
        .await
        .map_err(unavailable)?;
    if !acked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownJob.as_str(),
            format!("no job “{id}” of {} is out with this key", request.group),
        ));
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
