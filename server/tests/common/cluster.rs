//! A real Redis Cluster on loopback: Debian's `redis-server --cluster-enabled yes`, one
//! process per node, each in its own temporary directory (its `nodes.conf`), joined with
//! `redis-cli --cluster create`. With replicas, each master gets one; failovers and slot
//! migrations are driven with the real commands.

use super::{tempdir, Deployment, RedisTarget};
use redis::AsyncCommands;
use server::config::RedisMode;
use std::time::Duration;

/// One node's process.
pub struct Node {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempdir::Dir,
}

impl Node {
    fn launch(&mut self) {
        let port = self.port.to_string();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.0.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Waits until the node answers; false if its process exited (its port was taken).
    async fn started(&mut self) -> bool {
        for _ in 0..200 {
            if let Some(child) = &mut self.child {
                if !matches!(child.try_wait(), Ok(None)) {
                    self.child = None;
                    return false;
                }
            }
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                    if connection.ping::<String>().await.is_ok() {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain (non-cluster) connection to this node alone.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("a cluster node answers")
    }

    /// This node's cluster id.
    pub async fn id(&self) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut self.connection().await)
            .await
            .unwrap()
    }

    pub async fn is_master(&self) -> bool {
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut self.connection().await)
            .await
            .unwrap();
        matches!(role.first(), Some(redis::Value::BulkString(kind)) if kind == b"master")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct RedisCluster {
    pub nodes: Vec<Node>,
}

/// A port P whose cluster bus port (P + 10000) is free too, both below the ephemeral range
/// (32768-60999), where an outgoing connection may take a port between this check and
/// Redis binding it.
fn cluster_port() -> u16 {
    loop {
        let port: u16 = rand::random_range(10_000..22_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl RedisCluster {
    /// `masters` masters (at least 3), each with `replicas` replicas; returns once every node
    /// says `cluster_state:ok` and agrees on every slot.
    pub async fn start(masters: usize, replicas: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        while nodes.len() < masters * (1 + replicas) {
            let port = cluster_port();
            let dir =
                std::env::temp_dir().join(format!("confab-cluster-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut node = Node {
                port,
                child: None,
                dir: tempdir::Dir(dir),
            };
            node.launch();
            if node.started().await {
                nodes.push(node);
            } // else another test took the port first: try another
        }
        let cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_ok().await;
        cluster
    }

    /// Until every running node reports `cluster_state:ok`.
    pub async fn wait_until_ok(&self) {
        for _ in 0..300 {
            let mut ok = true;
            for node in self.nodes.iter().filter(|node| node.child.is_some()) {
                let Ok(client) = redis::Client::open(node.url()) else {
                    ok = false;
                    break;
                };
                let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                    ok = false;
                    break;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .unwrap_or_default();
                if !info.contains("cluster_state:ok") {
                    ok = false;
                    break;
                }
            }
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    /// The slot of a key (as every node computes it).
    pub async fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut self.nodes[0].connection().await)
            .await
            .unwrap()
    }

    /// The running node that serves `slot` as master.
    pub async fn owner_of(&self, slot: u16) -> &Node {
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            if !node.is_master().await {
                continue;
            }
            let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut node.connection().await)
                .await
                .unwrap();
            let id = node.id().await;
            for range in slots {
                let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                    (range.first(), range.get(1))
                else {
                    continue;
                };
                let master_id = match range.get(2) {
                    Some(redis::Value::Array(master)) => match master.get(2) {
                        Some(redis::Value::BulkString(id)) => {
                            String::from_utf8_lossy(id).into_owned()
                        }
                        _ => continue,
                    },
                    _ => continue,
                };
                if (*start..=*end).contains(&i64::from(slot)) && master_id == id {
                    return node;
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Moves `slot`, with its keys, from its owner to another master, the way
    /// `redis-cli --cluster reshard` does: IMPORTING / MIGRATING, MIGRATE the keys in
    /// batches, then SETSLOT NODE on every master.
    pub async fn migrate_slot(&self, slot: u16) {
        let source = self.owner_of(slot).await;
        let mut target = None;
        for node in &self.nodes {
            if node.port != source.port && node.child.is_some() && node.is_master().await {
                target = Some(node);
                break;
            }
        }
        let target = target.expect("another master");
        let (source_id, target_id) = (source.id().await, target.id().await);
        let mut at_source = source.connection().await;
        let mut at_target = target.connection().await;
        let setslot = |state: &str, id: &str| {
            let mut command = redis::cmd("CLUSTER");
            command.arg("SETSLOT").arg(slot).arg(state).arg(id);
            command
        };
        setslot("IMPORTING", &source_id)
            .query_async::<()>(&mut at_target)
            .await
            .unwrap();
        setslot("MIGRATING", &target_id)
            .query_async::<()>(&mut at_source)
            .await
            .unwrap();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut at_source)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async::<()>(&mut at_source)
                .await
                .unwrap();
        }
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            if node.is_master().await {
                setslot("NODE", &target_id)
                    .query_async::<()>(&mut node.connection().await)
                    .await
                    .unwrap();
            }
        }
        let _: () = at_source.ping().await.unwrap();
    }
}

impl RedisCluster {
    /// A manual failover (`CLUSTER FAILOVER` on its replica) of the master serving `slot`:
    /// the replica catches up, then takes over; returns once it serves the slot.
    pub async fn fail_over(&self, slot: u16) {
        let primary_id = self.owner_of(slot).await.id().await;
        let replicas: Vec<String> = redis::cmd("CLUSTER")
            .arg("REPLICAS")
            .arg(&primary_id)
            .query_async(&mut self.owner_of(slot).await.connection().await)
            .await
            .unwrap();
        let replica_id = replicas
            .first()
            .and_then(|line| line.split_whitespace().next())
            .expect("the primary has a replica")
            .to_string();
        let mut replica = None;
        for node in &self.nodes {
            if node.child.is_some() && node.id().await == replica_id {
                replica = Some(node);
            }
        }
        let replica = replica.expect("the replica runs");
        let primary = self.owner_of(slot).await;
        // A manual failover needs a replica in sync (right after `--cluster create` its link
        // may still be coming up) and is given up by Redis if it does not finish in time: wait
        // for the link, and ask again if nothing happened.
        for _attempt in 0..3 {
            for _ in 0..100 {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut replica.connection().await)
                    .await
                    .unwrap_or_default();
                if info.contains("master_link_status:up") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query_async::<()>(&mut replica.connection().await)
                .await
                .unwrap();
            for _ in 0..100 {
                if replica.is_master().await && !primary.is_master().await {
                    self.wait_until_ok().await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("the replica did not take over");
    }
}

async fn wait_until_up(port: u16) {
    for _ in 0..100 {
        if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                if connection.ping::<String>().await.is_ok() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server (cluster node) did not start on port {port}");
}

impl RedisTarget for RedisCluster {
    fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(Node::url).collect();
        urls.join(",")
    }
    fn mode(&self) -> Option<RedisMode> {
        Some(RedisMode::Cluster)
    }
}

impl Deployment for RedisCluster {
    fn kill(&mut self) {
        self.nodes.iter_mut().for_each(Node::kill);
    }

    /// Every node again, empty, on its port with its `nodes.conf`: the same cluster.
    async fn restart(&mut self) {
        self.kill();
        for node in &mut self.nodes {
            node.launch();
        }
        for node in &self.nodes {
            wait_until_up(node.port).await;
        }
        self.wait_until_ok().await;
    }

    async fn kill_pubsub_connections(&self) -> usize {
        let mut killed = 0;
        for node in &self.nodes {
            let count: usize = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut node.connection().await)
                .await
                .unwrap_or(0);
            killed += count;
        }
        killed
    }
}
