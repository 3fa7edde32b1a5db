//! Graceful shutdown: sockets are closed with 4000 ("reconnect"), and the server stops.

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
