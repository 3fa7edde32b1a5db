//! Several instances sharing real Redis: cross-instance chat without loss, duplicates or
//! reordering; presence that agrees everywhere; a killed instance's users expiring; a Redis
//! restart survived. Every case runs on one Redis, on two Redis shards and on a 3-master Redis
//! Cluster (`one_redis::case`, `two_shards::case`, `three_node_cluster::case`), so a failure
//! names its topology.

mod common;

use app::protocol::close;
use common::cluster::RedisCluster;
use common::{eventually, redis_instance, Client, Deployment, Redises, TestServer};
use serde_json::{json, Value};
use server::config::RedisMode;
use std::collections::HashMap;
use std::time::Duration;

/// A client on `on`, signed in with a session created on `issuer` (tokens work everywhere).
async fn client_via(issuer: &TestServer, on: &TestServer, name: &str) -> Client {
    let (token, user_id) = issuer.guest(name).await;
    let client = Client::signed_in(&on.ws_url(), &token).await;
    assert_eq!(client.user_id, user_id);
    client
}

async fn members_on(server: &TestServer, room: &str) -> Vec<String> {
    let body = server
        .http("GET", &format!("/api/rooms/{room}/members"), None, &[])
        .await
        .json();
    common::fields(&body["members"], "name")
}

async fn users_on_different_instances_chat_in_order_without_loss_or_duplicates(
    redis: impl Deployment,
) {
    let servers = [
        redis_instance(&redis, "order").await,
        redis_instance(&redis, "order").await,
        redis_instance(&redis, "order").await,
    ];
    let mut clients = Vec::new();
    for (i, name) in ["Ana", "Ben", "Cy"].into_iter().enumerate() {
        // The session comes from the next instance: a token works on every instance.
        let mut client = client_via(&servers[(i + 1) % 3], &servers[i], name).await;
        client.join("xroom").await;
        clients.push(client);
    }
    const EACH: usize = 40;
    for n in 0..EACH {
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .send(json!({"type": "message", "roomId": "xroom", "content": format!("{i}:{n}"), "clientMsgId": format!("c{i}-{n}")}))
                .await;
        }
    }
    // Every client sees every other client's messages exactly once, each sender's in order,
    // and all receivers see the same global order (ids).
    let mut orders: Vec<Vec<String>> = Vec::new();
    for (me, client) in clients.iter_mut().enumerate() {
        let mut next_seq: HashMap<usize, usize> = HashMap::new();
        let mut seen_ids = Vec::new();
        let mut acks = 0;
        while seen_ids.len() < 2 * EACH || acks < EACH {
            let event = client.recv().await;
            match event["type"].as_str() {
                Some("ack") => acks += 1,
                Some("message") => {
                    let content = event["content"].as_str().unwrap();
                    let (sender, seq) = content.split_once(':').unwrap();
                    let (sender, seq): (usize, usize) =
                        (sender.parse().unwrap(), seq.parse().unwrap());
                    assert_ne!(sender, me, "no echo to the sending connection");
                    let expected = next_seq.entry(sender).or_insert(0);
                    assert_eq!(
                        seq, *expected,
                        "in order, no loss, no duplicate from {sender}"
                    );
                    *expected += 1;
                    seen_ids.push(event["id"].as_str().unwrap().to_string());
                }
                _ => {}
            }
        }
        client.expect_silence(Duration::from_millis(300)).await;
        orders.push(seen_ids);
    }
    // Pairwise, the messages two clients both received arrive in the same order.
    for a in 0..3 {
        for b in 0..3 {
            let common: Vec<&String> = orders[a]
                .iter()
                .filter(|id| orders[b].contains(id))
                .collect();
            let in_b: Vec<&String> = orders[b]
                .iter()
                .filter(|id| orders[a].contains(id))
                .collect();
            assert_eq!(common, in_b, "same order on every instance");
        }
    }
    // History is shared: any instance serves all 120 messages.
    let page = servers[2]
        .http("GET", "/api/rooms/xroom/messages", None, &[])
        .await
        .json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 50);
    assert_eq!(page["hasMore"], true);
}

async fn presence_agrees_on_every_instance(redis: impl Deployment) {
    let a = redis_instance(&redis, "presence").await;
    let b = redis_instance(&redis, "presence").await;
    let mut ana = client_via(&a, &a, "Ana").await;
    let mut ana_other_tab = client_via(&a, &b, "Ana").await; // a second session of another Ana
    let mut ben = client_via(&b, &b, "Ben").await;
    ana.join("p").await;
    ben.join("p").await;
    assert_eq!(
        ana.expect("user_joined").await["name"],
        "Ben",
        "joins cross instances"
    );

    // Ana's second tab with the same token on the other instance: one person.
    let mut ana_tab2 = b.second_tab(&ana).await;
    ana_tab2.join("p").await;
    ben.expect_silence(Duration::from_millis(300)).await;

    for server in [&a, &b] {
        assert_eq!(members_on(server, "p").await, ["Ana", "Ben"]);
        let online = server
            .http("GET", "/api/online-users", None, &[])
            .await
            .json();
        assert_eq!(online["count"], 3, "Ana, Ben and the other Ana: {online}");
        let rooms = server.http("GET", "/api/rooms", None, &[]).await.json();
        assert_eq!(rooms["rooms"][0]["members"], 2);
    }
    // One tab leaves: still present; the last one leaves: gone, announced across instances.
    ana.send(json!({"type": "leave", "roomId": "p"})).await;
    ben.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(members_on(&a, "p").await, ["Ana", "Ben"]);
    drop(ana_tab2);
    assert_eq!(
        ben.expect("user_left").await["userId"],
        ana.user_id.as_str()
    );
    for server in [&a, &b] {
        assert_eq!(members_on(server, "p").await, ["Ben"]);
    }
    ana_other_tab.assert_alive().await;
}

async fn a_killed_instance_disappears_from_presence(redis: impl Deployment) {
    let survivor = redis_instance(&redis, "kill").await;
    // The victim is the real binary, so it can be killed with SIGKILL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut victim = std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis.url())
        .env(
            "CONFAB_REDIS_MODE",
            match redis.mode() {
                Some(RedisMode::Cluster) => "cluster",
                _ if redis.url().contains(',') => "shards",
                _ => "standalone",
            },
        )
        .env("CONFAB_REDIS_PREFIX", "kill")
        .env("CONFAB_PRESENCE_LEASE_SECS", "2")
        .env("CONFAB_PRESENCE_REFRESH_SECS", "1")
        .env("CONFAB_LOG", "warn")
        .spawn()
        .expect("confab starts");
    let victim_url = format!("ws://127.0.0.1:{port}/ws");
    eventually(Duration::from_secs(20), "victim listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;

    let mut ben = survivor.client("Ben").await;
    ben.join("k").await;
    let (token, _) = survivor.guest("Vic").await;
    let mut vic = Client::signed_in(&victim_url, &token).await;
    vic.join("k").await;
    assert_eq!(ben.expect("user_joined").await["name"], "Vic");
    assert_eq!(members_on(&survivor, "k").await, ["Ben", "Vic"]);

    victim.kill().expect("SIGKILL");
    victim.wait().unwrap();
    // Readers ignore entries without a lease (2 s); the survivor then cleans up and announces.
    let left = tokio::time::timeout(Duration::from_secs(10), ben.expect("user_left"))
        .await
        .expect("user_left in time");
    assert_eq!(left["name"], "Vic");
    assert_eq!(members_on(&survivor, "k").await, ["Ben"]);
    let online = survivor
        .http("GET", "/api/online-users", None, &[])
        .await
        .json();
    assert_eq!(common::fields(&online["users"], "name"), ["Ben"]);
}

async fn a_redis_restart_is_survived(mut redis: impl Deployment) {
    let a = redis_instance(&redis, "restart").await;
    let b = redis_instance(&redis, "restart").await;
    let mut ana = a.client("Ana").await;
    let mut ben = b.client("Ben").await;
    ana.join("r").await;
    ben.join("r").await;
    let before = ana.say("r", "before", "c1").await;
    assert_eq!(ben.expect("message").await["content"], "before");
    let page = a.http("GET", "/api/rooms/r/messages", None, &[]).await;
    let epoch = page.json()["epoch"].as_str().unwrap().to_string();
    assert_ne!(epoch, "", "the first message made the room's epoch");

    redis.kill();
    // The instances stay up, say why they cannot serve, and refuse sends rather than drop them.
    let health = a.http("GET", "/health", None, &[]).await;
    assert_eq!(health.status, 503);
    let body: Value = health.json();
    assert_eq!(body["status"], "unavailable");
    assert!(body["reason"].as_str().unwrap().contains("redis"), "{body}");
    ana.send(
        json!({"type": "message", "roomId": "r", "content": "while down", "clientMsgId": "c2"}),
    )
    .await;
    let refused = ana.expect("error").await;
    assert_eq!(refused["code"], "unavailable");
    assert_eq!(refused["clientMsgId"], "c2");

    // Redis comes back empty: the room's history (and its epoch) is gone, so the members
    // cannot be caught up. They are told so, never left thinking nothing happened.
    redis.restart().await;
    for server in [&a, &b] {
        eventually(Duration::from_secs(15), "healthy again", || async {
            server.http("GET", "/health", None, &[]).await.status == 200
        })
        .await;
    }
    for member in [&mut ana, &mut ben] {
        assert_eq!(member.expect_close().await.0, close::RESYNC);
    }
    // Sessions were lost with the data: new ones. A resume from the old position, with the old
    // epoch, is answered with `recovered: false`, never `true`.
    let mut ana = a.client("Ana").await;
    let mut ben = b.client("Ben").await;
    ana.send(json!({"type": "join", "roomId": "r", "since": before["id"], "epoch": epoch}))
        .await;
    let resumed = ana.expect("room_history").await;
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert_ne!(resumed["epoch"], epoch.as_str());
    ben.join("r").await;
    // Subscriptions were restored: delivery resumes across instances without a restart.
    ana.say("r", "after", "c3").await;
    let message = ben.expect("message").await;
    assert_eq!(message["content"], "after");
    eventually(Duration::from_secs(10), "presence restored", || async {
        members_on(&a, "r").await == ["Ana", "Ben"]
    })
    .await;
}

async fn accounts_work_everywhere_and_signing_out_closes_sockets_on_every_instance(
    redis: impl Deployment,
) {
    let a = redis_instance(&redis, "accounts").await;
    let b = redis_instance(&redis, "accounts").await;
    let created = a.register("Ana", "correct horse").await;
    assert_eq!(created.status, 201, "{}", created.body);
    // Unique across instances, in any case.
    let again = b.register("ANA", "other horse").await;
    assert_eq!(again.status, 409, "{}", again.body);
    let signed = b.login("Ana", "correct horse").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let token = created.json()["token"].as_str().unwrap().to_string();
    let other = signed.json()["token"].as_str().unwrap().to_string();

    let mut on_a = Client::signed_in(&a.ws_url(), &token).await;
    let mut on_b = Client::signed_in(&b.ws_url(), &token).await;
    let mut other_session = Client::signed_in(&b.ws_url(), &other).await;
    assert_eq!(a.sign_out(&token).await.status, 204);
    assert_eq!(on_a.expect_close().await.0, 4503);
    assert_eq!(
        on_b.expect_close().await.0,
        4503,
        "closed on the other instance too"
    );
    other_session.assert_alive().await;
    assert_eq!(b.whoami(&token).await.status, 401);
}

async fn sign_in_failures_are_counted_across_instances(redis: impl Deployment) {
    let (url, mode) = (redis.url(), redis.mode());
    let start = || {
        let url = url.clone();
        TestServer::start_with(move |c| {
            c.redis_url = Some(url);
            c.redis_mode = mode;
            c.redis_prefix = "limits".into();
            c.login_failures_per_user = 2;
        })
    };
    let (a, b) = (start().await, start().await);
    assert_eq!(a.register("ana", "correct horse").await.status, 201);
    assert_eq!(a.login("ana", "guess").await.status, 401);
    assert_eq!(b.login("ana", "guess").await.status, 401);
    let locked = a.login("ana", "correct horse").await;
    assert_eq!(locked.status, 429, "{}", locked.body);
}

async fn a_sign_out_missed_during_a_pubsub_outage_still_closes_sockets(redis: impl Deployment) {
    let a = redis_instance(&redis, "missed").await;
    let b = redis_instance(&redis, "missed").await;
    let (token, _) = a.guest("Ana").await;
    let mut on_b = Client::signed_in(&b.ws_url(), &token).await;
    // Every pub/sub connection drops; the sign-out is published before they are back
    // (they reconnect after at least 100 ms), so nobody hears it live.
    let killed = redis.kill_pubsub_connections().await;
    assert!(killed >= 2, "{killed}");
    assert_eq!(a.sign_out(&token).await.status, 204);
    // B catches up from the tombstone once it is back.
    assert_eq!(on_b.expect_close().await.0, 4503);
}

async fn accounts_and_sessions_survive_a_restart_of_every_instance(redis: impl Deployment) {
    let first = redis_instance(&redis, "restart").await;
    let created = first.register("ana", "correct horse").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_string();
    first.shutdown().await;

    let second = redis_instance(&redis, "restart").await;
    let me = second.whoami(&token).await;
    assert_eq!(me.status, 200, "still signed in: {}", me.body);
    assert_eq!(me.json()["user"]["name"], "ana");
    let again = second.login("ana", "correct horse").await;
    assert_eq!(
        again.status, 200,
        "the account is still there: {}",
        again.body
    );
}

/// Runs each case as its own test on each Redis topology.
macro_rules! on_every_topology {
    ($($case:ident),* $(,)?) => {
        mod one_redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Redises::standalone().await).await;
                }
            )*
        }
        mod two_shards {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Redises::shards(2).await).await;
                }
            )*
        }
        mod three_node_cluster {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::RedisCluster::start(3, 0).await).await;
                }
            )*
        }
    };
}

on_every_topology!(
    users_on_different_instances_chat_in_order_without_loss_or_duplicates,
    presence_agrees_on_every_instance,
    a_killed_instance_disappears_from_presence,
    a_redis_restart_is_survived,
    accounts_work_everywhere_and_signing_out_closes_sockets_on_every_instance,
    sign_in_failures_are_counted_across_instances,
    a_sign_out_missed_during_a_pubsub_outage_still_closes_sockets,
    accounts_and_sessions_survive_a_restart_of_every_instance,
);
