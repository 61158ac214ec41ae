//! A link-level TCP proxy per ordered node pair, so the chaos runner can cut
//! and heal the link between any two nodes: node i reaches node j only
//! through the proxy for (i, j), and cutting the pair {i, j} closes both
//! directions' connections and refuses new ones until healed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxies of a cluster.
pub(super) struct Proxies {
    /// `(from, to)` → the address `from` dials to reach `to`.
    pub(super) addresses: BTreeMap<(u64, u64), SocketAddr>,
    links: BTreeMap<(u64, u64), Arc<watch::Sender<bool>>>,
    _tasks: JoinSet<()>,
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl Proxies {
    /// Starts one proxy per ordered pair of `targets` (node → its real peer
    /// address), on free loopback ports.
    pub(super) async fn start(targets: &BTreeMap<u64, SocketAddr>) -> std::io::Result<Proxies> {
        let mut addresses = BTreeMap::new();
        let mut links = BTreeMap::new();
        let mut tasks = JoinSet::new();
        for &a in targets.keys() {
            for &b in targets.keys() {
                if a < b {
                    links.insert((a, b), Arc::new(watch::channel(false).0));
                }
            }
        }
        for &from in targets.keys() {
            for (&to, &target) in targets {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addresses.insert((from, to), listener.local_addr()?);
                let cut = links
                    .get(&pair(from, to))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(watch::channel(false).0));
                tasks.spawn(serve(listener, target, cut));
            }
        }
        Ok(Proxies {
            addresses,
            links,
            _tasks: tasks,
        })
    }

    /// Cuts (or heals) the link between `a` and `b`, both directions.
    pub(super) fn set_cut(&self, a: u64, b: u64, cut: bool) {
        if let Some(link) = self.links.get(&pair(a, b)) {
            link.send_replace(cut);
        }
    }

    /// Heals every link.
    pub(super) fn heal_all(&self) {
        for link in self.links.values() {
            link.send_replace(false);
        }
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, cut: Arc<watch::Sender<bool>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if *cut.borrow() {
                    drop(client); // refused while cut
                    continue;
                }
                connections.spawn(relay(client, target, cut.subscribe()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|c| *c) => {} // dropping both streams closes them
    }
}
