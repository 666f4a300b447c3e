//! Private Redis Clusters and Sentinels, made of `redis-server` processes
//! the test starts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::scratch::new_scratch_dir;

/// A cluster-enabled server, its files in `dir`, in no cluster yet.
fn start_cluster_node(dir: &Path) -> RedisServer {
    let port = free_cluster_port();
    RedisServer::start_with(
        port,
        format!("redis://127.0.0.1:{port}"),
        vec![
            format!("--port {port}"),
            "--cluster-enabled yes".to_owned(),
            format!(
                "--cluster-config-file '{}/nodes-{port}.conf'",
                dir.display()
            ),
            format!("--dir '{}'", dir.display()),
        ],
    )
}

/// A private three-master Redis Cluster (no replicas until the test adds
/// some with [`add_replica`](Self::add_replica)), made by the test
/// with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Replicas added by [`add_replica`](Self::add_replica): not in `nodes`.
    replicas: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them into one cluster.
    ///
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is missing or the cluster does not
    /// become healthy within 20 s.
    pub fn start() -> RedisCluster {
        let dir = new_scratch_dir("cluster");
        let nodes: Vec<RedisServer> = (0..3).map(|_| start_cluster_node(&dir)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let cli = env_or(REDIS_CLI_ENV, "redis-cli");
        let created = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| {
                fail!("{cli} is needed to create the test cluster (redis-cli comes with redis-server, e.g. apt-get install -y redis-server; {REDIS_CLI_ENV} names another): {err}")
            });
        assert!(
            created.status.success(),
            "{cli} --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|node| node.command("CLUSTER INFO").contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the test cluster did not become healthy within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster {
            nodes,
            replicas: Vec::new(),
            dir,
        }
    }

    /// `redis://127.0.0.1:{port}` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.url().to_owned())
            .collect()
    }

    /// One node, for raw commands such as `CLUSTER KEYSLOT`.
    pub fn node(&self, index: usize) -> &RedisServer {
        &self.nodes[index % self.nodes.len()]
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.replicas.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Sentinel monitoring `master` under the name `master_name`.
pub struct RedisSentinel {
    server: RedisServer,
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts a Sentinel (quorum 1) for the server `master`.
    pub fn start(master: &RedisServer, master_name: &str) -> RedisSentinel {
        RedisSentinel::start_configured(master, master_name, 1, &[])
    }

    /// The Sentinel's URL.
    pub fn url(&self) -> &str {
        self.server.url()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    let start = 20000 + (std::process::id() % 20000) as u16;
    (0..20000u16)
        .map(|offset| 20000 + (start - 20000 + offset * 7) % 25000)
        .find(|&port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
                && CLUSTER_PORTS_TAKEN
                    .lock()
                    .map(|mut taken| taken.insert(port))
                    .unwrap_or(false)
        })
        .unwrap_or_else(|| fail!("no free port pair for a cluster node"))
}

/// Ports handed out to cluster nodes of this process, so two are never equal.
static CLUSTER_PORTS_TAKEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<u16>>> =
    std::sync::LazyLock::new(Default::default);

// Failover and resharding tests: Sentinels with a quorum and settings of
// their own, and raw commands to Sentinels and to a cluster's nodes.

impl RedisSentinel {
    /// Starts a Sentinel for the server `master` with `quorum` and extra
    /// lines for its configuration file (after the `sentinel monitor` line),
    /// e.g. `sentinel down-after-milliseconds {master_name} 3000`.
    pub fn start_configured(
        master: &RedisServer,
        master_name: &str,
        quorum: u32,
        settings: &[String],
    ) -> RedisSentinel {
        let dir = new_scratch_dir("sentinel");
        let port = free_port();
        let config = dir.join("sentinel.conf");
        let mut text = format!(
            "port {port}\nsentinel monitor {master_name} 127.0.0.1 {} {quorum}\n",
            master.port()
        );
        for line in settings {
            text.push_str(line);
            text.push('\n');
        }
        if let Err(err) = std::fs::write(&config, text) {
            fail!("cannot write {}: {err}", config.display());
        }
        let server = RedisServer::start_with(
            port,
            format!("redis://127.0.0.1:{port}"),
            vec![format!("'{}'", config.display()), "--sentinel".to_owned()],
        );
        RedisSentinel { server, dir }
    }

    /// Sends one command to the Sentinel (inline protocol) and returns the raw reply.
    pub fn command(&self, command: &str) -> String {
        self.server.command(command)
    }

    /// Whether what the Sentinel says of the master `master_name`
    /// (`SENTINEL <about> <master_name>`: `MASTER`, `REPLICAS`) has each of
    /// `fields` at its value (for `REPLICAS`, those of the first replica).
    pub fn reports(&self, about: &str, master_name: &str, fields: &[(&str, &str)]) -> bool {
        let reply = self.command(&format!("SENTINEL {about} {master_name}"));
        fields
            .iter()
            .all(|&(name, value)| reply_field(&reply, name) == Some(value))
    }
}

impl RedisCluster {
    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Joins a new node to the cluster as a replica of node `master`
    /// (`CLUSTER MEET`, then `CLUSTER REPLICATE`) and waits until it is in
    /// sync, so `WAIT` on that master counts it. The masters ([`len`](Self::len),
    /// [`node`](Self::node), [`urls`](Self::urls)) stay as they were.
    ///
    /// # Panics
    ///
    /// When the replica does not join and sync within 20 s.
    pub fn add_replica(&mut self, master: usize) -> &RedisServer {
        let master = &self.nodes[master % self.nodes.len()];
        let master_id = master.command("CLUSTER MYID");
        let master_id = master_id
            .lines()
            .find(|line| !line.starts_with('$'))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let replica = start_cluster_node(&self.dir);
        replica.command(&format!("CLUSTER MEET 127.0.0.1 {}", master.port()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut answer = String::new();
        while !answer.starts_with("+OK") {
            assert!(
                Instant::now() < deadline,
                "the new node did not become a replica of {master_id} within 20 s: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
            // Refused until the node has learnt the master's id from the bus.
            answer = replica.command(&format!("CLUSTER REPLICATE {master_id}"));
        }
        while !replica
            .command("INFO replication")
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "the replica of {master_id} did not sync within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.replicas.push(replica);
        self.replica(self.replicas.len() - 1)
    }

    /// A replica added by [`add_replica`](Self::add_replica), in the order added.
    pub fn replica(&self, index: usize) -> &RedisServer {
        &self.replicas[index % self.replicas.len()]
    }
}
