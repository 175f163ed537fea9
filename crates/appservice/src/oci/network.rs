//! The private network of an app's containers (`"network": "private"`): a bridge per
//! app on a /24 of its own, and per container launch a network namespace joined to it
//! by a veth pair. Made with `ip` (iproute2), as root.
//!
//! - The bridge, `sb` + the node's hash + 5 hex digits of the app's name (15
//!   characters, the kernel's limit), holds the subnet's first address, the instances'
//!   gateway: the node itself. Its subnet is a /24 of 10.128.0.0/9 chosen by a hash of
//!   the bridge's name, passing over any that overlaps an address or route the machine
//!   already has (another node's bridge, a LAN).
//! - Isolation without a firewall: the bridge has IPv4 forwarding off
//!   (`net.ipv4.conf.BRIDGE.forwarding = 0`) and a policy rule `iif BRIDGE prohibit`
//!   (after the `local` table), so what arrives from an instance is delivered to the
//!   node's own addresses or not at all; it is never routed on, to another app's bridge
//!   or out of the machine. Members of one app reach each other on the bridge itself
//!   (layer 2, nothing routed). The rule keeps the isolation when something turns
//!   forwarding on again for every interface (writing `net.ipv4.ip_forward` resets the
//!   per-interface flags).
//! - An instance's namespace is named after its container (`strata-HASH-web-1.3`,
//!   `/run/netns/...`), has `lo` up, `eth0` (the veth's far end) with the instance's
//!   address and a default route through the gateway. The veth's near end is `sv` + the
//!   node's hash + a launch counter.
//! - No name server is reached from inside: the container's `/etc/resolv.conf` names
//!   its own loopback ([`RESOLV_CONF`]), so a lookup fails at once.
//! - `$STRATA_URL` works unchanged from inside: where the node API listens on loopback
//!   (or on every address), a listener the node opens *inside* the namespace, on its
//!   loopback at the API's port, passes each connection on to the node API.
//!
//! Nothing is left behind: a launch's namespace and veth go when its container is
//! deleted, the bridge and its rule when the app stops; [`SWEEP`], run by the container
//! guard when the node goes (even by SIGKILL) and by the next node on the state dir
//! before its first container, deletes every namespace, link and rule of the node's.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::fnv;

/// The priority of the `prohibit` rule of every app bridge: after `local` (0), before
/// `main` (32766).
const RULE_PRIORITY: u32 = 1000;

/// Where `ip netns add` puts a namespace.
const NETNS_DIR: &str = "/run/netns";

/// The shell that deletes the namespaces, links and rules of the node whose container
/// prefix is `$p` (`strata-HASH-`): run by the container guard and at a node's start.
pub(crate) const SWEEP: &str = r#"PATH="$PATH:/usr/sbin:/sbin"
h=${p#strata-}; h=${h%-}
ip netns list 2>/dev/null | while read -r ns _; do
  case "$ns" in "$p"*) ip netns delete "$ns" >/dev/null 2>&1 ;; esac
done
ip -o link show 2>/dev/null | while read -r _ name _; do
  name=${name%:}; name=${name%%@*}
  case "$name" in "sv$h"*|"sb$h"*) ip link delete "$name" >/dev/null 2>&1 ;; esac
done
ip -4 rule show 2>/dev/null | while read -r pref _ _ iif name _; do
  case "$iif $name" in "iif sb$h"*) ip -4 rule delete pref "${pref%:}" iif "$name" >/dev/null 2>&1 ;; esac
done
"#;

/// The `/etc/resolv.conf` of a container on a private network: nothing is routed off
/// the bridge, so no name server is reached; a lookup fails at once (nothing answers on
/// the namespace's own loopback) instead of waiting for the host's name server to time
/// out (Python's `http.server` looks up the name of the address it binds, 10 s).
pub(crate) const RESOLV_CONF: &str =
    "# strata: a private network reaches no name server; lookups fail at once\nnameserver 127.0.0.1\noptions attempts:1 timeout:1\n";

/// Launches so far in this process, for the names of their veths.
static LAUNCHES: AtomicU32 = AtomicU32::new(0);

/// Deletes what [`SWEEP`] deletes for the node whose container prefix is `prefix`.
pub(crate) async fn sweep(prefix: &str) {
    let script = format!("p=\"$1\"\n{SWEEP}");
    let swept = tokio::process::Command::new("/bin/sh")
        .args(["-c", &script, "strata-network-sweep", prefix])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(why) = swept {
        tracing::warn!(prefix, "could not remove the private networks a gone node left: {why}");
    }
}

/// The `HASH` of a container prefix `strata-HASH-`.
fn node_hash(prefix: &str) -> &str {
    prefix.trim_start_matches("strata-").trim_end_matches('-')
}

/// One app's private network on this node: its bridge and subnet.
pub(crate) struct AppNetwork {
    pub bridge: String,
    /// The subnet's first three octets.
    subnet: [u8; 3],
    /// The node's prefix (`strata-HASH-`): the namespaces' names start with it.
    prefix: String,
    /// Host numbers (2 to 254) of the instances attached now.
    used: Mutex<BTreeSet<u8>>,
}

impl AppNetwork {
    /// Makes the app's bridge (replacing one of the same name, left behind) on a free
    /// subnet. A subnet another node took at the same moment (seen once the address is
    /// on the bridge) is given up for the next free one.
    pub async fn create(prefix: &str, app: &str) -> Result<AppNetwork> {
        let bridge = format!("sb{}{:05x}", node_hash(prefix), fnv(app.as_bytes()) & 0xf_ffff);
        let _ = ip(&["link", "delete", &bridge], None).await;
        let mut passed_over = Vec::new();
        for _ in 0..8 {
            let mut taken = taken_networks().await?;
            taken.extend_from_slice(&passed_over);
            let subnet = free_subnet(fnv(bridge.as_bytes()), &taken)
                .with_context(|| format!("no free /24 in 10.128.0.0/9 for the private network of app {app:?}"))?;
            let net = AppNetwork {
                bridge: bridge.clone(),
                subnet,
                prefix: prefix.to_string(),
                used: Mutex::new(BTreeSet::new()),
            };
            match net.make().await {
                Ok(true) => {
                    tracing::info!(bridge = net.bridge, gateway = %net.gateway(), "app {app:?} has a private network on 10.{}.{}.0/24", subnet[1], subnet[2]);
                    return Ok(net);
                }
                Ok(false) => {
                    net.remove().await;
                    passed_over.push((Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 0), 24));
                }
                Err(why) => {
                    net.remove().await;
                    return Err(why.context(format!("make the bridge {bridge} of app {app:?}'s private network")));
                }
            }
        }
        bail!("could not find a /24 for app {app:?}'s private network that no other interface took meanwhile")
    }

    /// Makes the bridge, isolated, with the gateway's address, and says whether its
    /// subnet is still its own (no other interface has an address in it).
    async fn make(&self) -> Result<bool> {
        let gateway = self.gateway();
        ip(&["link", "add", &self.bridge, "type", "bridge"], None).await?;
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &self.bridge], None).await?;
        let addrs = ip_output(&["-4", "-o", "addr", "show"]).await?;
        if shared_subnet(&addrs, &self.bridge, self.subnet) {
            return Ok(false);
        }
        self.isolate()?;
        let pref = RULE_PRIORITY.to_string();
        ip(
            &["-4", "rule", "add", "iif", &self.bridge, "pref", &pref, "prohibit"],
            None,
        )
        .await?;
        ip(&["link", "set", &self.bridge, "up"], None).await?;
        Ok(true)
    }

    /// The instances' gateway: the bridge's own address, the node.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// IPv4 forwarding off for what arrives on the bridge (asserted again at every
    /// attach, since turning forwarding on for all interfaces turns it on here too).
    fn isolate(&self) -> Result<()> {
        let path = format!("/proc/sys/net/ipv4/conf/{}/forwarding", self.bridge);
        std::fs::write(&path, "0").with_context(|| format!("write {path}"))
    }

    /// Deletes the bridge and its rule.
    pub async fn remove(&self) {
        let pref = RULE_PRIORITY.to_string();
        let _ = ip(&["-4", "rule", "delete", "iif", &self.bridge, "pref", &pref], None).await;
        let _ = ip(&["link", "delete", &self.bridge], None).await;
    }

    /// Makes the namespace of the container `id` on this network; `api` is the node
    /// API's address, reached from inside as from the node where it is on loopback.
    pub async fn attach(self: &Arc<Self>, id: &str, api: Option<SocketAddr>) -> Result<Attachment> {
        let host = {
            let mut used = self.used.lock().unwrap();
            let host = (2..=254u8)
                .find(|h| !used.contains(h))
                .context("the app's private network has 253 instances on this node, its most")?;
            used.insert(host);
            host
        };
        let n = LAUNCHES.fetch_add(1, Ordering::Relaxed) & 0xf_ffff;
        let mut attachment = Attachment {
            address: Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host),
            netns: id.to_string(),
            veth: format!("sv{}{n:05x}", node_hash(&self.prefix)),
            network: self.clone(),
            host,
            forwarder: None,
            removed: false,
        };
        match attachment.make(api).await {
            Ok(()) => Ok(attachment),
            Err(why) => {
                attachment.remove().await;
                Err(why.context(format!("attach {id} to the private network on {}", self.bridge)))
            }
        }
    }
}

/// One container launch's namespace on its app's network.
pub(crate) struct Attachment {
    /// The instance's address: where its `$PORT` is reached.
    pub address: Ipv4Addr,
    netns: String,
    veth: String,
    network: Arc<AppNetwork>,
    host: u8,
    /// Ends the `$STRATA_URL` forwarder when dropped.
    forwarder: Option<DropGuard>,
    removed: bool,
}

impl Attachment {
    /// The namespace, for the container's `config.json`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.netns)
    }

    async fn make(&mut self, api: Option<SocketAddr>) -> Result<()> {
        let (ns, veth, net) = (&self.netns, &self.veth, &self.network);
        if self.netns_path().exists() {
            let _ = ip(&["netns", "delete", ns], None).await;
        }
        ip(&["netns", "add", ns], None).await?;
        let host_side = format!(
            "link add {veth} type veth peer name eth0 netns {ns}\nlink set dev {veth} master {} up\n",
            net.bridge
        );
        ip(&["-batch", "-"], Some(&host_side)).await?;
        let inside = format!(
            "link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\nroute add default via {}\n",
            self.address,
            net.gateway()
        );
        ip(&["-netns", ns, "-batch", "-"], Some(&inside)).await?;
        net.isolate()?;
        if let Some(api) = api.and_then(api_inside) {
            self.forwarder = Some(forward(self.netns_path(), api).await?.drop_guard());
        }
        Ok(())
    }

    /// Deletes the namespace and the veth (a container still in the namespace loses
    /// its network).
    pub async fn remove(mut self) {
        self.forwarder = None;
        let (ns, veth) = (self.netns.clone(), self.veth.clone());
        let _ = ip(&["link", "delete", &veth], None).await;
        let _ = ip(&["netns", "delete", &ns], None).await;
        self.release();
    }

    fn release(&mut self) {
        self.removed = true;
        self.network.used.lock().unwrap().remove(&self.host);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Dropped without being removed (its task was aborted): from a thread, since no
        // runtime may be left to await on.
        self.forwarder = None;
        let (ns, veth) = (self.netns.clone(), self.veth.clone());
        self.release();
        std::thread::spawn(move || {
            for args in [vec!["link", "delete", &veth], vec!["netns", "delete", &ns]] {
                let _ = std::process::Command::new(ip_program())
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        });
    }
}

/// The `ip` program: on the PATH, or where Debian puts it (`/usr/sbin`, `/sbin`),
/// which a PATH without the sbin directories misses.
fn ip_program() -> PathBuf {
    static IP: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IP.get_or_init(|| super::runtime::find_program("ip").unwrap_or_else(|| PathBuf::from("ip")))
        .clone()
}

/// Runs `ip ARGS`, with `stdin` as its input (for `-batch -`); its error output is the
/// error.
async fn ip(args: &[&str], stdin: Option<&str>) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(ip_program());
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("a private network needs the ip command (apt-get install iproute2), and it is not installed")
        }
        Err(e) => return Err(e).context("start ip"),
    };
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).await.context("write to ip")?;
    }
    let out = child.wait_with_output().await.context("wait for ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Output of `ip ARGS`.
async fn ip_output(args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(ip_program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run ip (apt-get install iproute2)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The IPv4 networks this machine has addresses on or routes to (the default route
/// left out), as (address, prefix length).
async fn taken_networks() -> Result<Vec<(Ipv4Addr, u8)>> {
    let addrs = ip_output(&["-4", "-o", "addr", "show"]).await?;
    let routes = ip_output(&["-4", "route", "show", "table", "all"]).await?;
    let mut taken = Vec::new();
    for line in addrs.lines() {
        let mut words = line.split_whitespace();
        if words.any(|w| w == "inet") {
            taken.extend(words.next().and_then(parse_network));
        }
    }
    for line in routes.lines() {
        // `10.0.0.0/8 dev ...`, or a type first: `unreachable 10.0.0.0/8`, `local ...`.
        taken.extend(line.split_whitespace().take(2).find_map(parse_network));
    }
    Ok(taken.into_iter().filter(|&(_, len)| len > 0).collect())
}

/// Whether an interface other than `bridge` has an address in `subnet`'s /24, in the
/// output of `ip -4 -o addr show` (`4: eth0    inet 192.0.2.2/24 brd ...`).
fn shared_subnet(addrs: &str, bridge: &str, subnet: [u8; 3]) -> bool {
    addrs.lines().any(|line| {
        let mut words = line.split_whitespace();
        let name = words.nth(1).unwrap_or("");
        let addr = words.skip_while(|w| *w != "inet").nth(1).and_then(parse_network);
        name != bridge && addr.is_some_and(|(a, _)| a.octets()[..3] == subnet)
    })
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32).
fn parse_network(word: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = word.split_once('/').unwrap_or((word, "32"));
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((addr.parse().ok()?, len))
}

/// The first /24 of 10.128.0.0/9, from `hash` on, that overlaps none of `taken`.
fn free_subnet(hash: u64, taken: &[(Ipv4Addr, u8)]) -> Option<[u8; 3]> {
    let first = (hash % (1 << 15)) as u32;
    (0..(1u32 << 15)).map(|i| (first + i) % (1 << 15)).find_map(|i| {
        let subnet = [10, 128 + (i >> 8) as u8, (i & 0xff) as u8];
        let base = u32::from(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 0));
        let overlaps = taken.iter().any(|&(addr, len)| {
            let len = u32::from(len.min(24));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(addr) & mask == base & mask
        });
        (!overlaps).then_some(subnet)
    })
}

/// Where the node API is reached from inside a namespace through a forwarder: its
/// address when it listens on loopback, the loopback when it listens on every address
/// (reachable through the gateway then, but `$STRATA_URL` names the loopback); None
/// when it listens on an address of the machine, which the gateway reaches as it is.
fn api_inside(api: SocketAddr) -> Option<SocketAddr> {
    match api.ip() {
        ip if ip.is_loopback() => Some(api),
        IpAddr::V4(ip) if ip.is_unspecified() => Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), api.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), api.port())),
        _ => None,
    }
}

/// Listens at `api` inside the namespace at `netns` and passes every connection on to
/// `api` on the node; ends when the token is cancelled.
async fn forward(netns: PathBuf, api: SocketAddr) -> Result<CancellationToken> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own enters the namespace to open the listener (a socket stays in
    // the namespace it was made in), and ends there.
    std::thread::spawn(move || {
        let _ = tx.send(listen_in(&netns, api));
    });
    let listener = rx.await.context("open a listener in the namespace")??;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        loop {
            let (inside, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of descriptors, for example: not a busy loop.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(mut node) = tokio::net::TcpStream::connect(api).await else {
                    return;
                };
                let mut inside = inside;
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inside, &mut node) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(token)
}

/// A listener at `addr` made inside the network namespace at `netns` (this thread
/// enters it for good).
fn listen_in(netns: &std::path::Path, addr: SocketAddr) -> Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    // SAFETY: setns on a descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("enter the network namespace");
    }
    std::net::TcpListener::bind(addr).with_context(|| format!("listen on {addr} in {}", netns.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_overlapping_the_machines_networks_is_passed_over() {
        let hash = 5; // 10.128.5.0/24
        assert_eq!(free_subnet(hash, &[]), Some([10, 128, 5]));
        let taken = [
            (Ipv4Addr::new(10, 128, 5, 1), 24),
            (Ipv4Addr::new(10, 128, 6, 7), 32),
            (Ipv4Addr::new(192, 0, 2, 0), 24),
        ];
        assert_eq!(free_subnet(hash, &taken), Some([10, 128, 7]));
        // A wider network taken holds every /24 in it.
        assert_eq!(
            free_subnet(hash, &[(Ipv4Addr::new(10, 128, 0, 0), 16)]),
            Some([10, 129, 0])
        );
        // The last /24 wraps to the first.
        assert_eq!(free_subnet((1 << 15) - 1, &[]), Some([10, 255, 255]));
        assert_eq!(free_subnet(1 << 15, &[]), Some([10, 128, 0]));
        assert_eq!(free_subnet(0, &[(Ipv4Addr::new(10, 0, 0, 0), 8)]), None);
    }

    #[test]
    fn a_subnet_another_interface_took_meanwhile_is_seen() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                     7: sbaaaaaaaa00001    inet 10.130.4.1/24 scope global sbaaaaaaaa00001\n";
        assert!(!shared_subnet(addrs, "sbaaaaaaaa00001", [10, 130, 4]));
        assert!(shared_subnet(addrs, "sbbbbbbbbb00002", [10, 130, 4]));
        assert!(!shared_subnet(addrs, "sbbbbbbbbb00002", [10, 130, 5]));
    }

    #[test]
    fn networks_are_read_from_ip_output() {
        assert_eq!(parse_network("10.1.2.0/24"), Some((Ipv4Addr::new(10, 1, 2, 0), 24)));
        assert_eq!(parse_network("192.0.2.2"), Some((Ipv4Addr::new(192, 0, 2, 2), 32)));
        assert_eq!(parse_network("default"), None);
        assert_eq!(parse_network("10.1.2.0/33"), None);
    }

    #[test]
    fn the_api_is_forwarded_only_from_loopback_or_every_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(api_inside(at("127.0.0.1:4000")), Some(at("127.0.0.1:4000")));
        assert_eq!(api_inside(at("0.0.0.0:4000")), Some(at("127.0.0.1:4000")));
        assert_eq!(api_inside(at("[::]:4000")), Some(at("[::1]:4000")));
        assert_eq!(api_inside(at("192.0.2.2:4000")), None);
    }

    #[test]
    fn names_fit_the_kernels_limit_and_carry_the_nodes_hash() {
        assert_eq!(node_hash("strata-0a1b2c3d-"), "0a1b2c3d");
        let bridge = format!("sb{}{:05x}", node_hash("strata-0a1b2c3d-"), fnv(b"shop") & 0xf_ffff);
        assert!(bridge.len() <= 15 && bridge.starts_with("sb0a1b2c3d"), "{bridge}");
    }
}
