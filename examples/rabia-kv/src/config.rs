//! A node's settings: from flags, a TOML file (`--config`), or both (flags
//! win), checked as a whole with errors that name the setting.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7001"
//! resp = "127.0.0.1:6381"
//! data_dir = "/var/lib/rabia-kv/1"
//! persistence = "file"          # or "memory"
//! metrics = "127.0.0.1:9101"    # optional
//! cluster_id = "rabia-kv"       # every node of a cluster must agree
//! read_mode = "linearizable"    # or "local" (relaxed, possibly stale reads)
//! rejoin = false                # true: an empty data_dir replaces a lost one
//!
//! [peers]
//! 1 = "127.0.0.1:7001"
//! 2 = "127.0.0.1:7002"
//! 3 = "127.0.0.1:7003"
//! ```

use rabia_core::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where a node keeps its log and snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceKind {
    /// A write-ahead log and snapshots under `data_dir`, fsynced before any
    /// message that depends on them is sent (survives crashes).
    File,
    /// Nothing on disk: a restarted node rejoins empty and catches up from
    /// its peers (needs a majority that did not restart).
    Memory,
}

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Reads go through the log: linearizable (the default).
    Linearizable,
    /// Reads run on this replica's state at once: fast, possibly stale.
    Local,
}

/// A bad setting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing setting `{0}` (give it as --{flag} or in the --config file)", flag = .0.replace('_', "-"))]
    Missing(&'static str),
    /// A setting has a bad value.
    #[error("invalid `{setting}`: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Settings as given, each optional (the TOML file's shape, and what flags
/// fill in).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node's id.
    pub id: Option<u64>,
    /// Peer listen address (defaults to this node's entry in `peers`).
    pub listen: Option<SocketAddr>,
    /// Every member, id → peer address.
    pub peers: Option<BTreeMap<String, String>>,
    /// RESP listen address.
    pub resp: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// `file` or `memory`.
    pub persistence: Option<PersistenceKind>,
    /// Metrics and health endpoint address.
    pub metrics: Option<SocketAddr>,
    /// Cluster name; nodes with different names refuse each other.
    pub cluster_id: Option<String>,
    /// `linearizable` or `local`.
    pub read_mode: Option<ReadMode>,
    /// Most operations per batch.
    pub max_batch_size: Option<usize>,
    /// Longest wait to fill a batch while this node's previous batch awaits a decision, in ms.
    pub batch_timeout_ms: Option<u64>,
    /// How long to wait for a slot's opener to propose before proposing
    /// this node's own batches, in ms (0: at once).
    pub opener_wait_ms: Option<u64>,
    /// How long the node opening a slot waits, at most, for the next
    /// operations of the nodes that were in the previous slot, in µs.
    pub contributor_wait_us: Option<u64>,
    /// How long a node whose proposal is durable waits, at most, for the
    /// last nodes' proposals before it sends its State, in µs.
    pub unanimity_wait_us: Option<u64>,
    /// With file persistence, whether the node opening a slot sends the
    /// value ahead of its Proposal (default true).
    pub announce_opening: Option<bool>,
    /// How long a node that just answered its clients waits, at most, for
    /// their next operations before it opens or contributes to the next
    /// slot, in µs.
    pub refill_wait_us: Option<u64>,
    /// An empty data directory replaces a node that lost its data (learn
    /// before taking part) rather than starting a new member.
    pub rejoin: Option<bool>,
}

impl Settings {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// These settings, with every setting `over` gives replacing ours.
    pub fn overridden_by(self, over: Settings) -> Settings {
        Settings {
            id: over.id.or(self.id),
            listen: over.listen.or(self.listen),
            peers: over.peers.or(self.peers),
            resp: over.resp.or(self.resp),
            data_dir: over.data_dir.or(self.data_dir),
            persistence: over.persistence.or(self.persistence),
            metrics: over.metrics.or(self.metrics),
            cluster_id: over.cluster_id.or(self.cluster_id),
            read_mode: over.read_mode.or(self.read_mode),
            max_batch_size: over.max_batch_size.or(self.max_batch_size),
            batch_timeout_ms: over.batch_timeout_ms.or(self.batch_timeout_ms),
            opener_wait_ms: over.opener_wait_ms.or(self.opener_wait_ms),
            contributor_wait_us: over.contributor_wait_us.or(self.contributor_wait_us),
            unanimity_wait_us: over.unanimity_wait_us.or(self.unanimity_wait_us),
            announce_opening: over.announce_opening.or(self.announce_opening),
            refill_wait_us: over.refill_wait_us.or(self.refill_wait_us),
            rejoin: over.rejoin.or(self.rejoin),
        }
    }

    /// Checks everything and produces a node configuration.
    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let id = NodeId::from_u64(self.id.ok_or(ConfigError::Missing("id"))?);
        let raw_peers = self.peers.ok_or(ConfigError::Missing("peers"))?;
        let mut peers = BTreeMap::new();
        for (key, addr) in &raw_peers {
            let node: u64 = key
                .trim()
                .parse()
                .map_err(|_| invalid("peers", format!("`{key}` is not a node id (a number)")))?;
            let addr = resolve(addr.trim()).map_err(|why| {
                invalid(
                    "peers",
                    format!("`{addr}` (node {node}) is not HOST:PORT ({why})"),
                )
            })?;
            if let Some((other, _)) = peers.iter().find(|(_, a)| **a == addr) {
                return Err(invalid(
                    "peers",
                    format!("nodes {other} and {node} share the address {addr}"),
                ));
            }
            peers.insert(NodeId::from_u64(node), addr);
        }
        let Some(&own) = peers.get(&id) else {
            return Err(invalid(
                "peers",
                format!("this node's id {id} is not in the member list"),
            ));
        };
        let listen = self.listen.unwrap_or(own);
        let resp = self.resp.ok_or(ConfigError::Missing("resp"))?;
        let persistence = self.persistence.unwrap_or(PersistenceKind::File);
        if persistence == PersistenceKind::File && self.data_dir.is_none() {
            return Err(ConfigError::Missing("data_dir"));
        }
        if resp == listen {
            return Err(invalid("resp", "must differ from the peer listen address"));
        }
        if let Some(metrics) = self.metrics {
            if metrics == listen || metrics == resp {
                return Err(invalid(
                    "metrics",
                    "must differ from the peer and RESP addresses",
                ));
            }
        }
        let cluster_id = self.cluster_id.unwrap_or_else(|| "rabia-kv".to_string());
        if cluster_id.is_empty() {
            return Err(invalid("cluster_id", "must not be empty"));
        }
        let max_batch_size = self.max_batch_size.unwrap_or(4096);
        if max_batch_size == 0 {
            return Err(invalid("max_batch_size", "must be positive"));
        }
        let batch_timeout = Duration::from_millis(self.batch_timeout_ms.unwrap_or(5));
        if batch_timeout.is_zero() {
            return Err(invalid("batch_timeout_ms", "must be positive"));
        }
        let opener_wait = Duration::from_millis(self.opener_wait_ms.unwrap_or(10));
        let contributor_wait = Duration::from_micros(self.contributor_wait_us.unwrap_or(200));
        if contributor_wait > Duration::from_secs(1) {
            return Err(invalid(
                "contributor_wait_us",
                "must be at most 1000000 (one second)",
            ));
        }
        let unanimity_wait = Duration::from_micros(self.unanimity_wait_us.unwrap_or(200));
        if unanimity_wait > Duration::from_secs(1) {
            return Err(invalid(
                "unanimity_wait_us",
                "must be at most 1000000 (one second)",
            ));
        }
        let refill_wait = Duration::from_micros(self.refill_wait_us.unwrap_or(500));
        if refill_wait > Duration::from_secs(1) {
            return Err(invalid(
                "refill_wait_us",
                "must be at most 1000000 (one second)",
            ));
        }
        let rejoin = self.rejoin.unwrap_or(false);
        if rejoin && peers.len() == 2 {
            return Err(invalid(
                "rejoin",
                "a cluster of 2 nodes cannot take a rejoining node back (the other node cannot decide alone)",
            ));
        }
        Ok(NodeConfig {
            id,
            listen,
            peers,
            resp,
            data_dir: self.data_dir,
            persistence,
            metrics: self.metrics,
            cluster_id,
            read_mode: self.read_mode.unwrap_or(ReadMode::Linearizable),
            max_batch_size,
            batch_timeout,
            opener_wait,
            contributor_wait,
            unanimity_wait,
            refill_wait,
            announce_opening: self.announce_opening.unwrap_or(true),
            rejoin,
        })
    }
}

/// `IP:PORT`, or `HOST:PORT` resolved once, now (IPv4 first).
fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text.to_socket_addrs().map_err(|e| e.to_string())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| "the name resolves to no address".to_string())
}

/// Parses `--peers 1=127.0.0.1:7001,2=127.0.0.1:7002` into the settings'
/// shape (addresses are checked by [`Settings::validate`]).
pub fn parse_peers_flag(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('=') else {
            return Err(invalid("peers", format!("`{item}` is not ID=HOST:PORT")));
        };
        if peers
            .insert(id.trim().to_string(), addr.trim().to_string())
            .is_some()
        {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    if peers.is_empty() {
        return Err(invalid("peers", "no members given"));
    }
    Ok(peers)
}

/// A validated node configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Peer listen address.
    pub listen: SocketAddr,
    /// Every member's peer address (this node included).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// RESP listen address.
    pub resp: SocketAddr,
    /// Data directory (required for file persistence).
    pub data_dir: Option<PathBuf>,
    /// Storage.
    pub persistence: PersistenceKind,
    /// Metrics and health endpoint.
    pub metrics: Option<SocketAddr>,
    /// Cluster name.
    pub cluster_id: String,
    /// How reads are served.
    pub read_mode: ReadMode,
    /// Most operations per batch.
    pub max_batch_size: usize,
    /// Longest wait to fill a batch.
    pub batch_timeout: Duration,
    /// Longest wait for a slot's opener to propose.
    pub opener_wait: Duration,
    /// Longest wait of a slot's opener for the previous slot's contributors.
    pub contributor_wait: Duration,
    /// Longest wait of a node with a durable proposal for the last
    /// proposals before it sends its State.
    pub unanimity_wait: Duration,
    /// Longest wait of a node for its answered clients' next operations.
    pub refill_wait: Duration,
    /// Whether the node opening a slot sends the value ahead of its
    /// Proposal (file persistence only).
    pub announce_opening: bool,
    /// An empty store replaces a node that lost its data: it learns how
    /// far its predecessor went before it takes part.
    pub rejoin: bool,
}

impl NodeConfig {
    /// The cluster name as the 64-bit id the transport handshake carries
    /// (FNV-1a: stable across builds and platforms).
    pub fn cluster_hash(&self) -> u64 {
        self.cluster_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            id: Some(1),
            peers: Some(
                parse_peers_flag("1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003").unwrap(),
            ),
            resp: Some("127.0.0.1:6381".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
            ..Settings::default()
        }
    }

    #[test]
    fn a_complete_configuration_validates_with_defaults() {
        let c = base().validate().unwrap();
        assert_eq!(c.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.persistence, PersistenceKind::File);
        assert_eq!(c.read_mode, ReadMode::Linearizable);
    }

    #[test]
    fn each_mistake_is_named() {
        let e = |s: Settings| s.validate().unwrap_err().to_string();
        assert!(e(Settings {
            id: Some(9),
            ..base()
        })
        .contains("id 9 is not in the member list"));
        assert!(e(Settings {
            resp: None,
            ..base()
        })
        .contains("--resp"));
        assert!(e(Settings {
            data_dir: None,
            ..base()
        })
        .contains("--data-dir"));
        let mut dup = base();
        dup.peers
            .as_mut()
            .unwrap()
            .insert("4".into(), "127.0.0.1:7001".into());
        assert!(e(dup).contains("share the address"));
        let mut bad = base();
        bad.peers
            .as_mut()
            .unwrap()
            .insert("x".into(), "127.0.0.1:1".into());
        assert!(e(bad).contains("not a node id"));
        let mut named = base();
        named
            .peers
            .as_mut()
            .unwrap()
            .insert("2".into(), "localhost:7002".into());
        assert_eq!(
            named.validate().unwrap().peers[&NodeId::from_u64(2)],
            "127.0.0.1:7002".parse().unwrap(),
            "host names resolve"
        );
        let mut nonsense = base();
        nonsense
            .peers
            .as_mut()
            .unwrap()
            .insert("2".into(), "no port here".into());
        assert!(e(nonsense).contains("is not HOST:PORT"));
        assert!(parse_peers_flag("1:127.0.0.1:1")
            .unwrap_err()
            .to_string()
            .contains("ID=HOST:PORT"));
        assert!(Settings {
            data_dir: None,
            persistence: Some(PersistenceKind::Memory),
            ..base()
        }
        .validate()
        .is_ok());
        let two_rejoin = Settings {
            peers: Some(parse_peers_flag("1=127.0.0.1:7001,2=127.0.0.1:7002").unwrap()),
            rejoin: Some(true),
            ..base()
        };
        assert!(e(two_rejoin).contains("invalid `rejoin`"));
        assert!(
            Settings {
                rejoin: Some(true),
                ..base()
            }
            .validate()
            .unwrap()
            .rejoin
        );
    }

    #[test]
    fn waits_above_one_second_are_refused() {
        let too_long = Some(2_000_000);
        for (field, settings) in [
            (
                "contributor_wait_us",
                Settings {
                    contributor_wait_us: too_long,
                    ..base()
                },
            ),
            (
                "unanimity_wait_us",
                Settings {
                    unanimity_wait_us: too_long,
                    ..base()
                },
            ),
            (
                "refill_wait_us",
                Settings {
                    refill_wait_us: too_long,
                    ..base()
                },
            ),
        ] {
            let e = settings.validate().unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn toml_and_flags_combine_with_flags_winning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "id = 2\nresp = \"127.0.0.1:6382\"\npersistence = \"memory\"\nopener_wait_ms = 25\ncontributor_wait_us = 50\nunanimity_wait_us = 80\nrefill_wait_us = 700\nannounce_opening = false\n[peers]\n1 = \"127.0.0.1:7001\"\n2 = \"127.0.0.1:7002\"\n",
        )
        .unwrap();
        let file = Settings::from_file(&path).unwrap();
        let c = file
            .overridden_by(Settings {
                resp: Some("127.0.0.1:7777".parse().unwrap()),
                ..Settings::default()
            })
            .validate()
            .unwrap();
        assert_eq!(c.id, NodeId::from_u64(2));
        assert_eq!(c.resp, "127.0.0.1:7777".parse().unwrap());
        assert_eq!(c.opener_wait, Duration::from_millis(25));
        assert_eq!(c.contributor_wait, Duration::from_micros(50));
        assert_eq!(c.unanimity_wait, Duration::from_micros(80));
        assert_eq!(c.refill_wait, Duration::from_micros(700));
        assert!(!c.announce_opening);
        assert!(!crate::node::engine_config(&c).announce_opening);
        assert_eq!(
            crate::node::engine_config(&c).refill_wait,
            Duration::from_micros(700)
        );
        assert_eq!(
            crate::node::engine_config(&c).opener_wait,
            Duration::from_millis(25),
            "reaches the engine"
        );
        std::fs::write(&path, "id = 2\nbogus = 1\n").unwrap();
        assert!(Settings::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }
}
