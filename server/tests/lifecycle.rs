//! Ending connections: graceful shutdown (4000, "reconnect") and dead peers (4002).

mod common;

use common::TestServer;
use std::time::Duration;

#[tokio::test]
async fn shutdown_closes_sockets_with_the_reconnect_code() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("r").await;
    ben.join("r").await;
    ana.say("r", "before shutdown", "c1").await;
    assert_eq!(ben.expect("message").await["content"], "before shutdown");

    let stopping = tokio::spawn(server.shutdown());
    for client in [&mut ana, &mut ben] {
        let (code, reason) = client.expect_close().await;
        assert_eq!(code, app::protocol::close::SHUTDOWN);
        assert!(app::protocol::close::should_reconnect(code));
        assert!(!reason.is_empty());
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn silent_peers_are_closed_and_live_ones_kept() {
    let server = TestServer::start_with(|c| {
        c.ping_interval_secs = 1;
        c.pong_timeout_secs = 1;
    })
    .await;
    // Reading answers the server's pings (tungstenite replies with pongs): it stays.
    let mut live = server.client("Live").await;
    live.expect_silence(Duration::from_millis(3500)).await;
    live.assert_alive().await;

    // Not reading means no pongs: after ping + timeout the server closes with 4002.
    let mut silent = server.client("Silent").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, _) = silent.expect_close().await;
    assert_eq!(code, app::protocol::close::NO_PONG);
}
