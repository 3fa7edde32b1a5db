//! The engine's command connection: to one Redis, or to a Redis Cluster, behind one type.
//!
//! Both are multiplexed and cheap to clone; commands, pipelines and scripts are written once
//! against [`ConnectionLike`]. The cluster connection routes each command to the node that
//! owns its key's slot and follows redirects (`MOVED`, `ASK`) and topology changes itself.
//! What differs between the two is kept here and asked for by name: how a message is
//! published ([`Commands::publish_command`]) and whether commands over keys of different
//! slots may share a pipeline ([`Commands::run_all`]).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Commands of one [`Commands::run_all`] in flight at once in a cluster.
const RUN_ALL_CONCURRENCY: usize = 64;

#[derive(Clone)]
pub enum Commands {
    /// One Redis (also each of several shards).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Commands {
    /// `PUBLISH`, or `SPUBLISH` in a cluster: sharded pub/sub keeps a room's messages on the
    /// node that owns the room's slot, where classic `PUBLISH` would be copied to every node.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Commands::Single(_) => "PUBLISH",
            Commands::Cluster(_) => "SPUBLISH",
        }
    }

    /// Publishes a payload on a channel (a room's, the control channel, a probe's).
    pub async fn publish_on(
        &mut self,
        channel: &str,
        payload: impl redis::ToRedisArgs,
    ) -> RedisResult<()> {
        redis::cmd(self.publish_command())
            .arg(channel)
            .arg(payload)
            .query_async(self)
            .await
    }

    /// Runs independent commands whose replies are not needed: one pipeline (one round trip)
    /// on one Redis; in a cluster, where their keys may live on different nodes, each on its
    /// own, all at once.
    pub async fn run_all(&mut self, commands: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Commands::Single(_) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command).ignore();
                }
                pipe.query_async(self).await
            }
            Commands::Cluster(connection) => {
                use futures::{StreamExt, TryStreamExt};
                let runs = commands.into_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<()>(&mut connection).await }
                });
                // At most RUN_ALL_CONCURRENCY in flight: registering presence again after a
                // lost lease may be thousands of commands.
                futures::stream::iter(runs)
                    .buffer_unordered(RUN_ALL_CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await
                    .map(|_| ())
            }
        }
    }
}

impl Commands {
    /// Runs independent commands and returns their replies in order: one pipeline (one round
    /// trip) on one Redis; in a cluster each command on its own node, a bounded number at
    /// once.
    pub async fn query_all<T: redis::FromRedisValue>(
        &mut self,
        commands: Vec<Cmd>,
    ) -> RedisResult<Vec<T>> {
        match self {
            Commands::Single(_) => {
                if commands.is_empty() {
                    return Ok(Vec::new());
                }
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command);
                }
                pipe.query_async(self).await
            }
            Commands::Cluster(connection) => {
                use futures::{StreamExt, TryStreamExt};
                let runs = commands.into_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<T>(&mut connection).await }
                });
                futures::stream::iter(runs)
                    .buffered(RUN_ALL_CONCURRENCY)
                    .try_collect()
                    .await
            }
        }
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
            Commands::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
            Commands::Cluster(connection) => connection.get_db(),
        }
    }
}
