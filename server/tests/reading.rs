//! Room lists, read positions, unread and mention counts over the real protocol: on the
//! memory engine, and on two instances sharing Redis with the reader's tabs on different
//! instances (a read in one tab clears the other's count).

mod common;

use common::{redis_instance, Client, RedisServer, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn memory_engine_reading() {
    let server = TestServer::start().await;
    reading_scenario(&server, &server).await;
}

#[tokio::test]
async fn two_instances_sharing_redis_reading() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, "read").await;
    let b = redis_instance(&redis, "read").await;
    reading_scenario(&a, &b).await;
}

/// A server function called as a form post, signed in with `token` if given.
async fn server_fn(
    server: &TestServer,
    name: &str,
    form: &str,
    token: Option<&str>,
) -> common::HttpResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let body = (!form.is_empty()).then(|| form.to_string());
    common::http_request(server.addr, "POST", &format!("/fn/{name}"), body, &headers).await
}

/// The rooms of `token`'s user as the sidebar loads them (the `my_rooms` server function).
async fn my_rooms(server: &TestServer, token: &str) -> Value {
    let response = server_fn(server, "my_rooms", "", Some(token)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

fn room_ids(rooms: &Value) -> Vec<&str> {
    rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["roomId"].as_str().unwrap())
        .collect()
}

/// The next `read` event of a connection.
async fn next_read(client: &mut Client) -> Value {
    let event = client.expect("read").await;
    event["read"].clone()
}

/// Ana reads on `first`, her second tab is on `second`; Bo writes on `first`.
async fn reading_scenario(first: &TestServer, second: &TestServer) {
    let room = "reading-news";
    let quiet = "reading-quiet";
    let mut ana = first.client("Ana").await;
    let mut bo = first.client("Bo").await;
    bo.join(room).await;
    let before = bo.say(room, "said before Ana came", "b0").await;

    // Joining follows the room; what it held before counts as read.
    let joined = ana.join(room).await;
    assert_eq!(joined["read"]["lastRead"], before["id"], "{joined}");
    assert_eq!(joined["read"]["unread"], 0);
    ana.join(quiet).await;
    assert_eq!(
        room_ids(&my_rooms(second, &ana.token).await),
        [room, quiet],
        "the list keeps the order rooms were joined in, on every instance"
    );

    // Bo writes three messages, one mentioning Ana (in another letter case), and one
    // mentioning someone else.
    let m1 = bo.say(room, "hello all", "b1").await["id"].clone();
    let m2 = bo.say(room, "@ana, look at this", "b2").await["id"].clone();
    let m3 = bo.say(room, "@Anabel is not Ana", "b3").await["id"].clone();
    // Ana's own message is not unread to her.
    let mine = ana.say(room, "mine", "a1").await["id"].clone();

    // A second tab (on the other instance) learns the counts on joining.
    let mut tab = second.second_tab(&ana).await;
    let history = tab.join(room).await;
    let read = &history["read"];
    assert_eq!(read["lastRead"], before["id"]);
    assert_eq!(
        (read["unread"].as_u64(), read["mentions"].as_u64()),
        (Some(3), Some(1))
    );
    let rooms = my_rooms(second, &ana.token).await;
    assert_eq!(rooms[0]["read"]["unread"], 3, "{rooms}");
    assert_eq!(rooms[0]["read"]["mentions"], 1);
    assert_eq!(rooms[1]["read"]["unread"], 0);

    // Reading up to the mention in the first tab tells both tabs, and only Ana's.
    ana.send(json!({"type": "read", "roomId": room, "id": m2}))
        .await;
    for client in [&mut ana, &mut tab] {
        let read = next_read(client).await;
        assert_eq!(read["lastRead"], m2);
        assert_eq!(
            (read["unread"].as_u64(), read["mentions"].as_u64()),
            (Some(1), Some(0))
        );
    }
    // A position never moves back: an older read is answered with the current one.
    tab.send(json!({"type": "read", "roomId": room, "id": m1}))
        .await;
    assert_eq!(next_read(&mut tab).await["lastRead"], m2);
    assert_eq!(next_read(&mut ana).await["lastRead"], m2);
    // Nor past the newest message (that would hide messages not written yet).
    ana.send(json!({"type": "read", "roomId": room, "id": "99999999999999-0"}))
        .await;
    let newest = next_read(&mut ana).await;
    assert_eq!(newest["lastRead"], mine, "the newest message, after {m3}");
    assert_eq!(newest["unread"], 0);
    assert_eq!(next_read(&mut tab).await["unread"], 0);
    bo.send(json!({"type": "ping"})).await;
    assert_eq!(
        bo.expect("pong").await["type"],
        "pong",
        "Bo got no read event before his pong"
    );
    assert_eq!(my_rooms(first, &ana.token).await[0]["read"]["unread"], 0);

    // Bad reads get clear errors, and the connection lives on.
    ana.send(json!({"type": "read", "roomId": room, "id": "yesterday"}))
        .await;
    ana.expect_error("invalid_since").await;
    ana.send(json!({"type": "read", "roomId": "not-joined", "id": "1-0"}))
        .await;
    ana.expect_error("not_in_room").await;
    ana.assert_alive().await;

    // Leaving a room from the sidebar takes it off the list everywhere.
    let token = Some(ana.token.as_str());
    let missing = server_fn(second, "leave_room", "", token).await;
    assert_eq!(missing.status, 400, "a room is required: {}", missing.body);
    let malformed = server_fn(second, "leave_room", "room=Bad+Room", token).await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    let left = server_fn(second, "leave_room", &format!("room={quiet}"), token).await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(room_ids(&my_rooms(first, &ana.token).await), [room]);
    // Visitors have no list, and cannot leave one.
    let anonymous = server_fn(first, "my_rooms", "", None).await;
    assert_eq!((anonymous.status, anonymous.json()), (200, json!([])));
    let refused = server_fn(first, "leave_room", &format!("room={room}"), None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    tab.expect_silence(Duration::from_millis(200)).await;
}
