//! Worker pools on a queue namespace: each job goes to one worker of every group, across
//! instances; a job whose worker dies or does not finish in time goes to another and is
//! finished once; a job nobody finishes is dropped after `max_deliveries`; workers over HTTP;
//! every bad request refused with a clear code.

mod common;

use common::cluster::RedisCluster;
use common::{
    redis_instance_with, two_redis_instances_with, Client, Deployment, Redises, TempFile,
    TestServer,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `jobs`: a queue (1 s to finish, 3 deliveries) with its groups; `flaky`: 2 deliveries;
/// `news`: no queue. Signed-in connections may work on both queues.
struct Files {
    namespaces: TempFile,
    keys: TempFile,
    key: String,
}

fn files() -> Files {
    let key = server::api_keys::new_key();
    Files {
        namespaces: TempFile::with(
            r#"{"jobs":  {"subscribe": "signed_in", "publish": "signed_in",
                          "queue": {"ack_timeout": 1, "max_deliveries": 3, "workers": "signed_in",
                                    "groups": ["resize", "audit", "encode", "send", "render", "g"]}},
                "flaky": {"subscribe": "signed_in", "publish": "signed_in",
                          "queue": {"ack_timeout": 1, "max_deliveries": 2, "workers": "signed_in",
                                    "groups": ["g"]}},
                "news":  {"subscribe": "signed_in", "publish": "signed_in"}}"#,
        ),
        keys: TempFile::with(&server::api_keys::file_line("backend", &key)),
        key,
    }
}

fn configure(config: &mut server::config::Config, files: &Files) {
    config.namespaces_file = Some(files.namespaces.path());
    config.api_keys_file = Some(files.keys.path());
}

async fn work(client: &mut Client, channel: &str, group: &str, prefetch: u32) {
    client
        .send(json!({"type": "work", "channel": channel, "group": group, "prefetch": prefetch}))
        .await;
    let working = client.expect("working").await;
    assert_eq!(working["channel"], channel);
    assert_eq!(working["group"], group);
}

async fn enqueue(client: &mut Client, channel: &str, data: Value) {
    client
        .send(json!({"type": "publish", "channel": channel, "data": data}))
        .await;
}

/// A worker that finishes every job it gets, taking 20 ms for each (a worker is busy while
/// it works: others get the jobs meanwhile), until it has had none for `quiet`; what it got
/// (data → times seen).
fn finish_everything(
    mut worker: Client,
    quiet: Duration,
) -> tokio::task::JoinHandle<BTreeMap<i64, u32>> {
    tokio::spawn(async move {
        let mut got = BTreeMap::new();
        while let Ok(event) = tokio::time::timeout(quiet, worker.recv()).await {
            match event["type"].as_str() {
                Some("job") => {
                    *got.entry(event["data"].as_i64().unwrap()).or_insert(0) += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    worker
                        .send(json!({"type": "done", "channel": event["channel"],
                                     "group": event["group"], "id": event["id"]}))
                        .await;
                }
                Some("done") => {}
                _ => panic!("unexpected {event}"),
            }
        }
        got
    })
}

/// Two `resize` workers (one per instance) and one `audit` worker share 30 jobs: every job
/// is finished by exactly one resize worker, and the audit group gets every job too.
async fn each_job_goes_to_one_worker_of_each_group(a: &TestServer, b: &TestServer) {
    let mut producer = a.client("Shop").await;
    let mut on_a = a.client("W1").await;
    let mut on_b = b.client("W2").await;
    let mut audit = b.client("Audit").await;
    work(&mut on_a, "jobs:images", "resize", 2).await;
    work(&mut on_b, "jobs:images", "resize", 2).await;
    work(&mut audit, "jobs:images", "audit", 5).await;
    let workers = [on_a, on_b, audit].map(|w| finish_everything(w, Duration::from_millis(1_500)));
    for n in 0..30 {
        enqueue(&mut producer, "jobs:images", json!(n)).await;
    }
    let [on_a, on_b, audit] = workers;
    let (on_a, on_b, audit) = (
        on_a.await.unwrap(),
        on_b.await.unwrap(),
        audit.await.unwrap(),
    );
    let mut resized: Vec<i64> = on_a.keys().chain(on_b.keys()).copied().collect();
    resized.sort();
    assert_eq!(
        resized,
        (0..30).collect::<Vec<_>>(),
        "each job once: {on_a:?} {on_b:?}"
    );
    assert!(on_a.values().chain(on_b.values()).all(|n| *n == 1));
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both workers had work"
    );
    assert_eq!(
        audit.keys().copied().collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn jobs_are_shared_on_memory() {
    let files = files();
    let server = TestServer::start_with(|c| configure(c, &files)).await;
    each_job_goes_to_one_worker_of_each_group(&server, &server).await;
}

async fn jobs_are_shared_across_instances(redis: impl Deployment) {
    let files = files();
    let (a, b) = two_redis_instances_with(&redis, "work", |c| configure(c, &files)).await;
    each_job_goes_to_one_worker_of_each_group(&a, &b).await;
}

#[tokio::test]
async fn jobs_are_shared_on_one_redis() {
    jobs_are_shared_across_instances(Redises::standalone().await).await;
}

#[tokio::test]
async fn jobs_are_shared_on_shards() {
    jobs_are_shared_across_instances(Redises::shards(2).await).await;
}

#[tokio::test]
async fn jobs_are_shared_on_a_cluster() {
    jobs_are_shared_across_instances(RedisCluster::start(3, 0).await).await;
}

/// A worker's instance is killed (SIGKILL) while the worker holds a job: once the job's time
/// runs out, a worker on another instance gets it (attempt 2) and finishes it, once.
#[tokio::test]
async fn a_job_of_a_killed_worker_is_finished_once_by_another() {
    let redis = Redises::standalone().await;
    let files = files();
    let survivor = redis_instance_with(&redis, "kill", |c| configure(c, &files)).await;
    let namespaces = ("CONFAB_NAMESPACES_FILE", files.namespaces.path());
    let (mut victim, port) = common::spawn_instance(&redis, "kill", &[namespaces]).await;
    let (token, _) = survivor.guest("Doomed").await;
    let mut doomed = Client::signed_in(&format!("ws://127.0.0.1:{port}/ws"), &token).await;
    work(&mut doomed, "jobs:video", "encode", 1).await;
    let mut producer = survivor.client("Shop").await;
    enqueue(&mut producer, "jobs:video", json!({"film": 7})).await;
    let job = doomed.expect("job").await;
    assert_eq!(job["attempt"], 1);

    // The survivor's worker arrives while the doomed one holds the job: it gets nothing yet.
    let mut worker = survivor.client("Worker").await;
    work(&mut worker, "jobs:video", "encode", 1).await;
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    let again = tokio::time::timeout(Duration::from_secs(5), worker.expect("job"))
        .await
        .expect("the job comes back after its timeout");
    assert_eq!(again["id"], job["id"], "the same job, for deduplication");
    assert_eq!(again["data"], json!({"film": 7}));
    assert_eq!(again["attempt"], 2);
    worker
        .send(
            json!({"type": "done", "channel": "jobs:video", "group": "encode", "id": again["id"]}),
        )
        .await;
    assert_eq!(worker.expect("done").await["id"], job["id"]);
    // Finished once: it never comes back.
    worker.expect_silence(Duration::from_millis(2_500)).await;
}

/// On one instance: a worker that does not finish in time loses the job to another, and its
/// late `done` is refused; a worker that disconnects hands its job back at once; a job nobody
/// finishes is dropped after `max_deliveries`.
#[tokio::test]
async fn unfinished_jobs_move_on_and_end() {
    let files = files();
    let server = TestServer::start_with(|c| configure(c, &files)).await;
    let mut producer = server.client("Shop").await;
    let mut slow = server.client("Slow").await;
    work(&mut slow, "jobs:mail", "send", 1).await;
    enqueue(&mut producer, "jobs:mail", json!("welcome")).await;
    let job = slow.expect("job").await;
    let mut quick = server.client("Quick").await;
    work(&mut quick, "jobs:mail", "send", 1).await;
    let again = tokio::time::timeout(Duration::from_secs(3), quick.expect("job"))
        .await
        .expect("given again after 1 s");
    assert_eq!(
        (again["id"].clone(), again["attempt"].clone()),
        (job["id"].clone(), json!(2))
    );
    slow.send(json!({"type": "done", "channel": "jobs:mail", "group": "send", "id": job["id"]}))
        .await;
    let refused = slow.expect_error("unknown_job").await;
    assert_eq!(refused["channel"], "jobs:mail");
    quick
        .send(json!({"type": "done", "channel": "jobs:mail", "group": "send", "id": again["id"]}))
        .await;
    quick.expect("done").await;

    // A worker that goes away hands its job back without waiting for the timeout.
    enqueue(&mut producer, "jobs:mail", json!("reset")).await;
    let first = tokio::time::timeout(Duration::from_secs(2), async {
        tokio::select! {
            job = slow.expect("job") => ("slow", job),
            job = quick.expect("job") => ("quick", job),
        }
    })
    .await
    .expect("a worker gets the job");
    let (mut keeper, leaver) = match first.0 {
        "slow" => (quick, slow),
        _ => (slow, quick),
    };
    drop(leaver);
    let handed = tokio::time::timeout(Duration::from_millis(700), keeper.expect("job"))
        .await
        .expect("handed back before its 1 s timeout");
    assert_eq!(handed["id"], first.1["id"]);

    // Nobody finishes a flaky job: 2 deliveries, then it is dropped.
    let mut stuck = server.client("Stuck").await;
    work(&mut stuck, "flaky:x", "g", 1).await;
    enqueue(&mut producer, "flaky:x", json!("poison")).await;
    assert_eq!(stuck.expect("job").await["attempt"], 1);
    let mut second = server.client("Second").await;
    work(&mut second, "flaky:x", "g", 1).await;
    let retry = tokio::time::timeout(Duration::from_secs(3), second.expect("job"))
        .await
        .expect("attempt 2");
    assert_eq!(retry["attempt"], 2);
    let mut third = server.client("Third").await;
    work(&mut third, "flaky:x", "g", 1).await;
    third.expect_silence(Duration::from_millis(2_500)).await;
}

/// A backend works over HTTP with an API key: claim, done, and every refusal.
#[tokio::test]
async fn workers_over_http() {
    let files = files();
    let server = TestServer::start_with(|c| configure(c, &files)).await;
    let bearer = format!("Bearer {}", files.key);
    let auth = [("authorization", bearer.as_str())];
    let post = |path: &'static str, body: Value, authorized: bool| {
        let server = &server;
        let auth = if authorized { auth.to_vec() } else { vec![] };
        async move { server.http("POST", path, Some(body), &auth).await }
    };
    let claim = json!({"channel": "jobs:pdf", "group": "render", "count": 5});
    let empty = post("/api/jobs/claim", claim.clone(), true).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.json()["jobs"], json!([]));

    let published = post(
        "/api/publish",
        json!({"publications": [{"channel": "jobs:pdf", "data": 1}, {"channel": "jobs:pdf", "data": 2}]}),
        true,
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let ids = published.json()["offsets"].clone();
    let claimed = post("/api/jobs/claim", claim.clone(), true).await;
    let jobs = claimed.json()["jobs"].clone();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    assert_eq!(jobs[0]["id"], ids[0]);
    assert_eq!(
        (jobs[0]["data"].clone(), jobs[0]["attempt"].clone()),
        (json!(1), json!(1))
    );
    for job in jobs.as_array().unwrap() {
        let done = post(
            "/api/jobs/done",
            json!({"channel": "jobs:pdf", "group": "render", "id": job["id"]}),
            true,
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    // Done once: again is unknown, and nothing comes back after the timeout.
    let twice = post(
        "/api/jobs/done",
        json!({"channel": "jobs:pdf", "group": "render", "id": jobs[0]["id"]}),
        true,
    )
    .await;
    assert_eq!(
        (twice.status, twice.json()["code"].clone()),
        (404, json!("unknown_job"))
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        post("/api/jobs/claim", claim.clone(), true).await.json()["jobs"],
        json!([])
    );

    for (path, body, authorized, status, code) in [
        (
            "/api/jobs/claim",
            claim.clone(),
            false,
            401,
            "invalid_api_key",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "news:x", "group": "g"}),
            true,
            400,
            "not_a_queue",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "other:x", "group": "g"}),
            true,
            400,
            "unknown_namespace",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "jobs:pdf", "group": "a b"}),
            true,
            400,
            "invalid_message",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "jobs:pdf", "group": "unlisted"}),
            true,
            400,
            "unknown_group",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "jobs:pdf", "group": "g", "count": 0}),
            true,
            400,
            "invalid_message",
        ),
        (
            "/api/jobs/claim",
            json!({"channel": "jobs:pdf"}),
            true,
            400,
            "invalid_json",
        ),
        (
            "/api/jobs/done",
            json!({"channel": "jobs:pdf", "group": "g", "id": "nope"}),
            true,
            400,
            "invalid_message",
        ),
        (
            "/api/jobs/done",
            json!({"channel": "jobs:pdf", "group": "g", "id": "1-0"}),
            true,
            404,
            "unknown_job",
        ),
    ] {
        let response = post(path, body.clone(), authorized).await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{body}");
    }
}

#[tokio::test]
async fn bad_worker_requests_are_refused_and_the_connection_lives_on() {
    let files = files();
    let server = TestServer::start_with(|c| configure(c, &files)).await;
    let mut client = server.client("Ana").await;
    for (request, code) in [
        (
            json!({"type": "work", "channel": "news:x", "group": "g"}),
            "not_a_queue",
        ),
        (
            json!({"type": "work", "channel": "jobs:x", "group": "a b"}),
            "invalid_message",
        ),
        (
            json!({"type": "work", "channel": "jobs:x", "group": "unlisted"}),
            "unknown_group",
        ),
        (
            json!({"type": "work", "channel": "jobs:x", "group": "g", "prefetch": 0}),
            "invalid_message",
        ),
        (
            json!({"type": "work", "channel": "jobs:x", "group": "g", "prefetch": 101}),
            "invalid_message",
        ),
        (
            json!({"type": "subscribe", "channel": "jobs:x"}),
            "forbidden",
        ),
        (
            json!({"type": "done", "channel": "jobs:x", "group": "g", "id": "1-0"}),
            "unknown_job",
        ),
        (
            json!({"type": "done", "channel": "jobs:x", "group": "g", "id": "soon"}),
            "invalid_message",
        ),
        (
            json!({"type": "done", "channel": "news:x", "group": "g", "id": "1-0"}),
            "not_a_queue",
        ),
    ] {
        client.send(request.clone()).await;
        let error = client.expect_error(code).await;
        assert_eq!(error["channel"], request["channel"], "{request}");
    }
    client.assert_alive().await;
}
