//! One pub/sub session, to one Redis or to a Redis Cluster, behind one type: the
//! [`subscriber`](super::subscriber) subscribes, unsubscribes and reads [`Event`]s without
//! knowing which.
//!
//! One Redis: a dedicated RESP2 pub/sub connection, classic `SUBSCRIBE`.
//!
//! A cluster: a cluster connection speaking RESP3, subscribed with `SSUBSCRIBE` (sharded
//! pub/sub: each channel on the node that owns its slot, so a message crosses no other node).
//! Messages arrive as push messages. Three things need care, and each becomes an event:
//! - a node's connection drops (the crate reports `Disconnection`, then reconnects and
//!   resubscribes by itself): what was published meanwhile is gone, so that is a [`Event::Gap`];
//! - a slot moves to another node (migration, failover): Redis ends the subscriptions of its
//!   channels with a `sunsubscribe` push, and the crate does *not* subscribe again. That is
//!   [`Event::Dropped`]: the subscriber opens a new session (subscribing on this one could
//!   reach the old owner through a stale slot map: after a failover it is a replica, which
//!   accepts the subscription and never delivers the room's messages; measured) and catches
//!   every room up from its Stream;
//! - pushes are queued for the subscriber in a bounded queue; if it ever overflows, messages
//!   were dropped: a [`Event::Gap`] too. (The crate's own queue in front of it is unbounded.)

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, Msg, PushInfo, PushKind, RedisResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Push messages waiting for the subscriber (cluster); past this a gap is reported.
const PUSH_QUEUE: usize = 65_536;
/// Subscriptions sent at once when many rooms are subscribed together (cluster: one command
/// per channel, since channels of different slots cannot share one).
const SUBSCRIBE_CONCURRENCY: usize = 64;

/// Where sessions are opened.
pub enum Source {
    Single(redis::Client),
    Cluster {
        seeds: Vec<ConnectionInfo>,
        timeout: Duration,
    },
}

/// What a session reports.
pub enum Event {
    Message(Msg),
    /// Messages may have been missed on any channel.
    Gap(&'static str),
    /// Redis ended the subscription to this channel (its slot moved to another node).
    Dropped(String),
}

/// Sends one subscription change on a session: each command is sent when its future is
/// first polled, so several may be in flight, in the order they were made.
#[derive(Clone)]
pub enum Commander {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Commander {
    pub async fn subscribe(self, channel: String) -> RedisResult<()> {
        match self {
            Commander::Single(mut sink) => sink.subscribe(channel).await,
            Commander::Cluster(mut connection) => connection.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(self, channel: String) -> RedisResult<()> {
        match self {
            Commander::Single(mut sink) => sink.unsubscribe(channel).await,
            Commander::Cluster(mut connection) => connection.sunsubscribe(channel).await,
        }
    }
}

pub enum Session {
    Single {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::Receiver<PushInfo>,
        overflowed: Arc<AtomicBool>,
    },
}

impl Session {
    pub async fn open(source: &Source) -> RedisResult<Session> {
        match source {
            Source::Single(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok(Session::Single { sink, stream })
            }
            Source::Cluster { seeds, timeout } => {
                let (sender, pushes) = mpsc::channel(PUSH_QUEUE);
                let overflowed = Arc::new(AtomicBool::new(false));
                let overflow = overflowed.clone();
                let push_sender = move |push: PushInfo| {
                    if sender.try_send(push).is_err() {
                        overflow.store(true, Ordering::Relaxed);
                    }
                    Ok::<(), ()>(())
                };
                let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(push_sender)
                    .connection_timeout(*timeout)
                    .response_timeout(*timeout)
                    .build()?;
                let connection = client.get_async_connection().await?;
                Ok(Session::Cluster {
                    connection,
                    pushes,
                    overflowed,
                })
            }
        }
    }

    pub async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        match self {
            Session::Single { sink, .. } => sink.subscribe(channels).await,
            Session::Cluster { connection, .. } => {
                // Owned names and connections: the futures borrow nothing, so the task that
                // awaits them stays `Send`.
                let subscriptions: Vec<_> = channels
                    .iter()
                    .map(|channel| {
                        let (mut connection, channel) = (connection.clone(), channel.clone());
                        async move { connection.ssubscribe(channel).await }
                    })
                    .collect();
                let results: Vec<RedisResult<()>> = futures::stream::iter(subscriptions)
                    .buffer_unordered(SUBSCRIBE_CONCURRENCY)
                    .collect()
                    .await;
                results.into_iter().collect()
            }
        }
    }

    /// A handle that subscribes and unsubscribes on this session without borrowing it.
    pub fn commander(&self) -> Commander {
        match self {
            Session::Single { sink, .. } => Commander::Single(sink.clone()),
            Session::Cluster { connection, .. } => Commander::Cluster(connection.clone()),
        }
    }

    /// The next event; None when the session has ended.
    pub async fn next(&mut self) -> Option<Event> {
        match self {
            Session::Single { stream, .. } => stream.next().await.map(Event::Message),
            Session::Cluster {
                pushes, overflowed, ..
            } => loop {
                if overflowed.swap(false, Ordering::Relaxed) {
                    return Some(Event::Gap("the pub/sub queue overflowed"));
                }
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(message) = Msg::from_push_info(push) {
                            return Some(Event::Message(message));
                        }
                    }
                    PushKind::Disconnection => {
                        return Some(Event::Gap("a cluster node's connection dropped"))
                    }
                    PushKind::SUnsubscribe => {
                        let channel = push.data.first().and_then(|channel| match channel {
                            redis::Value::BulkString(bytes) => {
                                Some(String::from_utf8_lossy(bytes).into_owned())
                            }
                            _ => None,
                        });
                        if let Some(channel) = channel {
                            return Some(Event::Dropped(channel));
                        }
                    }
                    _ => {} // subscription confirmations
                }
            },
        }
    }
}
