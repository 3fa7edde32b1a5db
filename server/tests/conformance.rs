//! One suite, run against every engine: broker, history (ids, pages, since, trimming,
//! epochs, idempotent posts), presence (multi-tab, rooms, online), sessions (expiry, ending
//! closes sockets), accounts and counters behave the same in memory, on one Redis, on two
//! Redis shards and on a 3-master Redis Cluster. Each case is a test of its own per engine
//! (`memory::case`, `redis::case`, `redis_shards::case`, `redis_cluster::case`), so a failure
//! names itself.

mod common;

use app::protocol::{ServerMsg, User};
use app::validate::MessageId;
use common::{eventually, RedisServer};
use server::config::Config;
use server::engine::{AccountRecord, Draft, Follow, Position, Resume, SessionId, SessionRecord};
use server::hub::{encode, ConnectionId, Frame};
use server::state::AppState;
use std::time::Duration;

fn state(adjust: impl FnOnce(&mut Config)) -> AppState {
    let mut config = Config::defaults();
    config.redis_url = None;
    config.history_max = 5;
    config.presence_lease_secs = 2;
    config.presence_refresh_secs = 1;
    adjust(&mut config);
    server::build_state(config).expect("state")
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
        guest: true,
    }
}

fn draft(room: &str, content: &str) -> Draft {
    Draft {
        room_id: room.into(),
        user: user("ana"),
        content: content.into(),
        client_msg_id: Some(format!("c-{content}")),
    }
}

/// A position without an epoch (as from a client that sends none).
fn at(id: MessageId) -> Position {
    Position { epoch: None, id }
}

/// Joins a connection to a room and admits it with an empty history answer (taken off its
/// queue), as the node does once the history is read.
fn admitted(state: &AppState, room: &str, conn: &mut server::hub::Registration) {
    let hub = state.hub();
    hub.join(room, conn.id, "ana", &conn.outbox);
    assert!(hub.admit(room, conn.id, Frame::from("history"), None));
    assert_eq!(conn.queue.try_recv().unwrap().as_str(), "history");
}

/// The next frame queued to a connection, decoded.
async fn next_event(registration: &mut server::hub::Registration) -> ServerMsg {
    let frame = tokio::time::timeout(Duration::from_secs(5), registration.queue.recv())
        .await
        .expect("a frame in time")
        .expect("queue open");
    serde_json::from_str(&frame).expect("a server event")
}

async fn broker_and_post_deliver_encoded_events(state: &AppState) {
    let engine = state.engine();
    let hub = state.hub();
    let mut a = hub.register();
    let mut b = hub.register();
    admitted(state, "fan", &mut a);
    admitted(state, "fan", &mut b);
    engine.broker.subscribe("fan").await.unwrap();

    let typing = ServerMsg::Typing {
        room_id: "fan".into(),
        user_id: "ana".into(),
        name: "ANA".into(),
        is_typing: true,
    };
    engine
        .broker
        .publish("fan", encode(&typing), Some(a.id))
        .await
        .unwrap();
    assert_eq!(next_event(&mut b).await, typing);

    // A posted message reaches members as the exact message the sender is told about.
    let posted = engine
        .history
        .post(draft("fan", "hello \"quoted\" <b>"), Some(a.id))
        .await
        .unwrap()
        .message;
    assert_eq!(next_event(&mut b).await, ServerMsg::Message(posted.clone()));
    assert_eq!(posted.timestamp, MessageId::parse(&posted.id).unwrap().ms);
    // The origin connection got neither.
    assert!(a.queue.try_recv().is_none());

    hub.leave("fan", a.id);
    hub.leave("fan", b.id);
    engine.broker.unsubscribe("fan").await.unwrap();
}

async fn history_orders_pages_and_resumes(state: &AppState) {
    let history = &state.engine().history;
    let empty = history.page("nothing", None, 10).await.unwrap();
    assert!(empty.messages.is_empty() && !empty.has_more);
    assert_eq!(empty.epoch, "", "a room never written has no epoch yet");
    assert_eq!(
        history
            .since("nothing", &at(MessageId { ms: 0, seq: 0 }), 10)
            .await
            .unwrap(),
        Resume::Recovered(vec![]),
        "from the start of a room never written, nothing was missed"
    );
    assert_eq!(
        history
            .since("nothing", &at(MessageId { ms: 1, seq: 0 }), 10)
            .await
            .unwrap(),
        Resume::Lost,
        "a position no log can prove"
    );

    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            history
                .post(draft("h", &format!("m{n}")), None)
                .await
                .unwrap()
                .message
                .id,
        );
    }
    let parsed: Vec<MessageId> = ids.iter().map(|id| MessageId::parse(id).unwrap()).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {ids:?}"
    );

    let newest = history.page("h", None, 3).await.unwrap();
    assert_eq!(
        newest
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m2", "m3"]
    );
    assert!(newest.has_more);
    let older = history.page("h", Some(parsed[1]), 3).await.unwrap();
    assert_eq!(
        older
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m0"]
    );
    assert!(!older.has_more);
    let stored = &newest.messages[0];
    assert_eq!(
        (stored.user_id.as_str(), stored.name.as_str()),
        ("ana", "ANA")
    );
    assert_eq!(stored.client_msg_id.as_deref(), Some("c-m1"));

    let Resume::Recovered(after) = history.since("h", &at(parsed[1]), 10).await.unwrap() else {
        panic!("recoverable");
    };
    assert_eq!(
        after.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [&ids[2], &ids[3]]
    );
    assert_eq!(
        history.since("h", &at(parsed[0]), 2).await.unwrap(),
        Resume::Lost,
        "more than the window"
    );

    // The room index: in a cluster written apart, within a second or so.
    let newest = ("h".to_string(), ids[3].clone());
    eventually(Duration::from_secs(5), "the room index", || async {
        history.rooms(100).await.unwrap().contains(&newest)
    })
    .await;

    // Trimming: history_max is 5. Redis trims approximately (whole stream nodes), so post
    // enough for it to trim for sure; either way the oldest position is no longer resumable.
    for n in 0..300 {
        history
            .post(draft("t", &format!("t{n}")), None)
            .await
            .unwrap();
    }
    let first_page = history.page("t", None, 1).await.unwrap();
    assert_eq!(first_page.messages[0].content, "t299");
    assert_eq!(
        history
            .since("t", &at(MessageId { ms: 1, seq: 0 }), 1000)
            .await
            .unwrap(),
        Resume::Lost
    );
    let latest = MessageId::parse(&first_page.messages[0].id).unwrap();
    assert_eq!(
        history.since("t", &at(latest), 10).await.unwrap(),
        Resume::Recovered(vec![])
    );
}

async fn presence_counts_people_not_tabs(state: &AppState) {
    let presence = &state.engine().presence;
    let (ana, ben) = (user("ana"), user("ben"));
    let (tab1, tab2, ben_tab) = (ConnectionId(9001), ConnectionId(9002), ConnectionId(9003));
    presence.connect(tab1, &ana).await.unwrap();
    presence.connect(tab2, &ana).await.unwrap();
    presence.connect(ben_tab, &ben).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "lease live, presence visible",
        || async { presence.online().await.unwrap().len() == 2 },
    )
    .await;

    assert!(
        presence.join("p", tab1, &ana).await.unwrap(),
        "first tab: new in the room"
    );
    assert!(
        !presence.join("p", tab2, &ana).await.unwrap(),
        "second tab: already present"
    );
    assert!(presence.join("p", ben_tab, &ben).await.unwrap());
    let names: Vec<String> = presence
        .members("p")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["ANA", "BEN"]);
    assert_eq!(
        presence.room_counts(100).await.unwrap(),
        [("p".to_string(), 2)]
    );
    let other = ConnectionId(94);
    assert!(presence.join("q", other, &ben).await.unwrap());
    assert_eq!(
        presence.room_counts(1).await.unwrap().len(),
        1,
        "at most as many rooms as asked for"
    );
    assert!(presence.leave("q", other, &ben).await.unwrap());

    assert!(
        !presence.leave("p", tab1, &ana).await.unwrap(),
        "one tab left: still present"
    );
    assert!(
        !presence.leave("p", tab1, &ana).await.unwrap(),
        "leaving twice is not leaving"
    );
    assert!(
        presence.leave("p", tab2, &ana).await.unwrap(),
        "last tab left: gone"
    );
    assert_eq!(presence.members("p").await.unwrap().len(), 1);
    assert!(presence.leave("p", ben_tab, &ben).await.unwrap());
    assert!(presence.room_counts(100).await.unwrap().is_empty());

    for tab in [tab1, tab2, ben_tab] {
        presence.disconnect(tab).await.unwrap();
    }
    assert!(presence.online().await.unwrap().is_empty());
}

async fn sessions_expire_and_end_everywhere(state: &AppState) {
    let sessions = &state.engine().sessions;
    let record = SessionRecord {
        user: user("ana"),
        created_ms: 1,
        refreshed_ms: 2,
    };
    let id = SessionId([0xa; 32]);
    sessions
        .put_session(&id, &record, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        sessions.get_session(&id).await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(
        sessions.get_session(&SessionId([0xb; 32])).await.unwrap(),
        None
    );

    let short = SessionId([0xc; 32]);
    sessions
        .put_session(&short, &record, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(sessions.get_session(&short).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sessions.get_session(&short).await.unwrap(), None, "expired");

    // Ending a session closes the connections signed in with it (Redis: through the
    // control channel, which this instance hears like every other).
    let hub = state.hub();
    let tab = hub.register();
    let other = hub.register();
    hub.set_session(tab.id, id);
    hub.set_session(other.id, SessionId([0xd; 32]));
    sessions.end_session(&id).await.unwrap();
    assert_eq!(sessions.get_session(&id).await.unwrap(), None);
    eventually(
        Duration::from_secs(5),
        "the session's socket is asked to close",
        || async { tab.kick.reason().map(|r| r.code) == Some(app::protocol::close::SESSION_ENDED) },
    )
    .await;
    assert_eq!(other.kick.reason(), None);
    hub.unregister(tab.id);
    hub.unregister(other.id);
}

async fn accounts_are_unique(state: &AppState) {
    let accounts = &state.engine().accounts;
    let account = AccountRecord {
        user_id: "u-1".into(),
        username: "Ana".into(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        created_ms: 5,
    };
    assert_eq!(accounts.find_account("ana").await.unwrap(), None);
    assert!(accounts.create_account("ana", &account).await.unwrap());
    let impostor = AccountRecord {
        user_id: "u-2".into(),
        ..account.clone()
    };
    assert!(!accounts.create_account("ana", &impostor).await.unwrap());
    assert_eq!(accounts.find_account("ana").await.unwrap(), Some(account));
}

async fn counters_count_within_a_window(state: &AppState) {
    let counters = &state.engine().counters;
    let window = Duration::from_millis(300);
    assert_eq!(counters.peek("k").await.unwrap().count, 0);
    assert_eq!(counters.hit("k", window).await.unwrap().count, 1);
    let second = counters.hit("k", window).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(second.resets_in <= window && second.resets_in > Duration::ZERO);
    assert_eq!(counters.peek("k").await.unwrap().count, 2);
    assert_eq!(counters.hit("other", window).await.unwrap().count, 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        counters.peek("k").await.unwrap().count,
        0,
        "the window ended"
    );
    assert_eq!(counters.hit("k", window).await.unwrap().count, 1);
}

async fn a_retried_post_is_answered_with_the_original(state: &AppState) {
    let history = &state.engine().history;
    let hub = state.hub();
    let mut member = hub.register();
    admitted(state, "retry", &mut member);
    state.engine().broker.subscribe("retry").await.unwrap();
    let first = history.post(draft("retry", "once"), None).await.unwrap();
    assert!(!first.duplicate);
    let again = history.post(draft("retry", "once"), None).await.unwrap();
    assert!(again.duplicate, "same user, room and clientMsgId");
    assert_eq!(
        (&again.message.id, again.message.timestamp),
        (&first.message.id, first.message.timestamp),
        "the original id and timestamp"
    );
    // Delivered once: the retry stored and published nothing.
    assert_eq!(
        next_event(&mut member).await,
        ServerMsg::Message(first.message.clone())
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(member.queue.try_recv().is_none(), "no second delivery");
    let page = history.page("retry", None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);

    // The key is per user and per room.
    let mut other_user = draft("retry", "once");
    other_user.user = user("ben");
    assert!(!history.post(other_user, None).await.unwrap().duplicate);
    assert!(
        !history
            .post(draft("retry-elsewhere", "once"), None)
            .await
            .unwrap()
            .duplicate
    );
    // Without a clientMsgId nothing is deduplicated.
    let mut anonymous = draft("retry", "same words");
    anonymous.client_msg_id = None;
    let one = history.post(anonymous.clone(), None).await.unwrap();
    let two = history.post(anonymous, None).await.unwrap();
    assert_ne!(one.message.id, two.message.id);
    hub.leave("retry", member.id);
}

async fn positions_carry_the_rooms_epoch(state: &AppState) {
    let history = &state.engine().history;
    let first = history.post(draft("ep", "a"), None).await.unwrap().message;
    let page = history.page("ep", None, 10).await.unwrap();
    assert!(!page.epoch.is_empty(), "every page names its epoch");
    assert_eq!(
        history.page("ep", None, 1).await.unwrap().epoch,
        page.epoch,
        "stable"
    );
    history.post(draft("ep", "b"), None).await.unwrap();
    let id = MessageId::parse(&first.id).unwrap();
    let same = Position {
        epoch: Some(page.epoch.clone()),
        id,
    };
    let Resume::Recovered(after) = history.since("ep", &same, 10).await.unwrap() else {
        panic!("the same epoch resumes");
    };
    assert_eq!(after.len(), 1);
    let other = Position {
        epoch: Some("another-epoch".into()),
        id,
    };
    assert_eq!(
        history.since("ep", &other, 10).await.unwrap(),
        Resume::Lost,
        "a position from another epoch is never recovered"
    );
}

async fn reading_keeps_room_lists_and_moves_positions_forward(state: &AppState) {
    let engine = state.engine();
    let (reading, history) = (&engine.reading, &engine.history);
    let posted = |content: &'static str| async move {
        let id = history
            .post(draft("news", content), None)
            .await
            .unwrap()
            .message
            .id;
        MessageId::parse(&id).unwrap()
    };
    let first = posted("one").await;
    // Following starts reading after what the room holds; the list keeps its order.
    assert_eq!(
        reading
            .follow("bo", "news", Some(first), 3, None)
            .await
            .unwrap(),
        Follow::Reading(Some(first))
    );
    assert_eq!(
        reading.follow("bo", "empty", None, 3, None).await.unwrap(),
        Follow::Reading(None)
    );
    let second = posted("two").await;
    // Following again keeps the place and the position.
    assert_eq!(
        reading
            .follow("bo", "news", Some(second), 3, None)
            .await
            .unwrap(),
        Follow::Reading(Some(first))
    );
    assert_eq!(
        reading
            .follow("bo", "third", None, 3, Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        Follow::Reading(None)
    );
    assert_eq!(
        reading.follow("bo", "fourth", None, 3, None).await.unwrap(),
        Follow::ListFull
    );
    assert_eq!(
        reading.followed("bo").await.unwrap(),
        vec![
            ("news".to_string(), Some(first)),
            ("empty".to_string(), None),
            ("third".to_string(), None),
        ]
    );
    assert!(reading.followed("nobody").await.unwrap().is_empty());

    // Forward only.
    assert_eq!(
        reading.mark_read("bo", "news", second).await.unwrap(),
        Some(second)
    );
    assert_eq!(
        reading.mark_read("bo", "news", first).await.unwrap(),
        Some(second)
    );
    assert_eq!(
        reading.mark_read("bo", "elsewhere", second).await.unwrap(),
        None
    );
    assert_eq!(
        reading.mark_read("bo", "empty", first).await.unwrap(),
        Some(first)
    );

    // What is unread: after a position, in order, at most `max`.
    let third = posted("three").await;
    let unread = history.after("news", Some(second), 10).await.unwrap();
    assert_eq!(
        unread
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["three"]
    );
    assert_eq!(unread[0].id, third.to_string());
    let from_start = history.after("news", None, 2).await.unwrap();
    assert_eq!(
        from_start
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(history.after("nothing", None, 5).await.unwrap().is_empty());

    // Unfollowing forgets the position; following again starts anew.
    reading.unfollow("bo", "news").await.unwrap();
    assert_eq!(
        reading.followed("bo").await.unwrap().len(),
        2,
        "the other rooms stay"
    );
    assert_eq!(
        reading
            .follow("bo", "news", Some(third), 3, None)
            .await
            .unwrap(),
        Follow::Reading(Some(third))
    );
}

async fn an_event_for_one_user_reaches_only_their_connections(state: &AppState) {
    let engine = state.engine();
    let hub = state.hub();
    let (mut ana, mut bo) = (hub.register(), hub.register());
    hub.join("private", ana.id, "ana", &ana.outbox);
    assert!(hub.admit("private", ana.id, Frame::from("history"), None));
    hub.join("private", bo.id, "bo", &bo.outbox);
    assert!(hub.admit("private", bo.id, Frame::from("history"), None));
    ana.queue.try_recv().unwrap();
    bo.queue.try_recv().unwrap();
    engine.broker.subscribe("private").await.unwrap();
    let read = ServerMsg::Read {
        room_id: "private".into(),
        read: app::protocol::ReadState::default(),
    };
    engine
        .broker
        .publish_to_user("private", "ana", encode(&read))
        .await
        .unwrap();
    assert_eq!(next_event(&mut ana).await, read);
    // Bo gets the next room event, not Ana's.
    let typing = ServerMsg::Typing {
        room_id: "private".into(),
        user_id: "ana".into(),
        name: "ANA".into(),
        is_typing: true,
    };
    engine
        .broker
        .publish("private", encode(&typing), Some(ana.id))
        .await
        .unwrap();
    assert_eq!(next_event(&mut bo).await, typing);
}

/// Runs each named case as its own test against each engine.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let state = super::state(|_| {});
                    assert_eq!(state.engine().kind, "memory");
                    super::healthy(&state).await;
                    super::$case(&state).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = super::RedisServer::start().await;
                    let url = redis.url();
                    let state = super::state(move |c| c.redis_url = Some(url));
                    assert_eq!(state.engine().kind, "redis");
                    super::healthy(&state).await;
                    super::$case(&state).await;
                }
            )*
        }
        mod redis_cluster {
            use super::common::RedisTarget;
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = super::common::cluster::RedisCluster::start(3, 0).await;
                    let url = redis.url();
                    let state = super::state(move |c| {
                        c.redis_url = Some(url);
                        c.redis_mode = Some(server::config::RedisMode::Cluster);
                    });
                    assert_eq!(state.engine().kind, "redis-cluster");
                    super::healthy(&state).await;
                    super::$case(&state).await;
                }
            )*
        }
        mod redis_shards {
            use super::common::RedisTarget;
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = super::common::Redises::shards(2).await;
                    let url = redis.url();
                    let state = super::state(move |c| c.redis_url = Some(url));
                    assert_eq!(state.engine().kind, "redis-shards");
                    super::healthy(&state).await;
                    super::$case(&state).await;
                }
            )*
        }
    };
}

async fn healthy(state: &AppState) {
    let engine = state.engine().clone();
    eventually(Duration::from_secs(5), "engine healthy", || async {
        engine.lifecycle.health().await.is_ok()
    })
    .await;
}

conformance!(
    broker_and_post_deliver_encoded_events,
    history_orders_pages_and_resumes,
    a_retried_post_is_answered_with_the_original,
    positions_carry_the_rooms_epoch,
    presence_counts_people_not_tabs,
    sessions_expire_and_end_everywhere,
    accounts_are_unique,
    counters_count_within_a_window,
    reading_keeps_room_lists_and_moves_positions_forward,
    an_event_for_one_user_reaches_only_their_connections,
);
