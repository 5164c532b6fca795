//! The lab: three network namespaces joined by veths, built and torn down by RAII guards.
//!
//! ```text
//! ns pool [p0 198.18.1.2 2001:2:0:1::2] --veth-- [rp 198.18.1.1 2001:2:0:1::1] ns relay
//! ns relay [rg 198.18.2.1 2001:2:0:2::1] --veth-- [g0 198.18.2.2 2001:2:0:2::2] ns gw
//! ```
//! Code reaches into a namespace with [`in_netns`]: a helper thread `setns`es into it and runs the
//! closure, so sockets made there live in that namespace while the test process never moves (and
//! keeps the host's bpffs, which `ip netns exec` would hide).

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

pub const POOL_PEER: &str = "198.18.1.2";
pub const POOL_RELAY: &str = "198.18.1.1";
pub const GW_RELAY: &str = "198.18.2.1";
pub const GW_PEER: &str = "198.18.2.2";
pub const POOL_PEER6: &str = "2001:2:0:1::2";
pub const POOL_RELAY6: &str = "2001:2:0:1::1";
pub const GW_RELAY6: &str = "2001:2:0:2::1";
pub const GW_PEER6: &str = "2001:2:0:2::2";
/// A second address on the pool peer's interface, for spoofing and NAT tests.
pub const POOL_OTHER: &str = "198.18.1.3";

/// Whether privileged tests can run. With `MEDIATOR_REQUIRE_PRIVILEGED=1` (CI) a missing privilege
/// is a failure, not a skip.
pub fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if root {
        return true;
    }
    if std::env::var("MEDIATOR_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "{test}: needs root (network namespaces, XDP) and MEDIATOR_REQUIRE_PRIVILEGED=1 forbids skipping"
        );
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces, XDP); run as root to include it");
    false
}

pub fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread inside network namespace `ns` and returns its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let _ = sh("ip", &["netns", "del", name]);
        sh("ip", &["netns", "add", name])?;
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    }
    /// Runs a command inside the namespace without a new mount namespace (keeps bpffs).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
        let net = format!("--net=/run/netns/{}", self.name);
        let mut full = vec![net.as_str(), "--", cmd];
        full.extend_from_slice(args);
        sh("nsenter", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// The three-namespace lab. Fields drop in order, deleting the namespaces and their veths.
pub struct Lab {
    pub prefix: String,
    pub pool: Netns,
    pub relay: Netns,
    pub gw: Netns,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds the lab under a unique prefix (namespace names `mdp<pid>x<n>-pool` etc.).
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "mdp{}{}{n}",
            std::process::id(),
            tag.chars().take(3).collect::<String>()
        );
        let pool = Netns::new(&format!("{prefix}-pool"))?;
        let relay = Netns::new(&format!("{prefix}-relay"))?;
        let gw = Netns::new(&format!("{prefix}-gw"))?;
        sh(
            "ip",
            &[
                "-n",
                &pool.name,
                "link",
                "add",
                "p0",
                "type",
                "veth",
                "peer",
                "name",
                "rp",
                "netns",
                &relay.name,
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &gw.name,
                "link",
                "add",
                "g0",
                "type",
                "veth",
                "peer",
                "name",
                "rg",
                "netns",
                &relay.name,
            ],
        )?;
        let lab = Self {
            prefix,
            pool,
            relay,
            gw,
        };
        for (ns, ifname, v4, v6) in [
            (&lab.pool, "p0", POOL_PEER, POOL_PEER6),
            (&lab.relay, "rp", POOL_RELAY, POOL_RELAY6),
            (&lab.relay, "rg", GW_RELAY, GW_RELAY6),
            (&lab.gw, "g0", GW_PEER, GW_PEER6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"])?;
            ns.ip(&["link", "set", ifname, "up"])?;
            // LAB.md: a veth sender with TX checksum offload leaves partial UDP checksums that a
            // native redirect would carry on; real NICs are not affected. GRO on the receiving
            // peer lets redirected frames be delivered.
            ns.exec("ethtool", &["-K", ifname, "tx", "off", "gro", "on"])?;
        }
        lab.pool
            .ip(&["addr", "add", &format!("{POOL_OTHER}/24"), "dev", "p0"])?;
        lab.set_neighbours()?;
        Ok(lab)
    }

    /// Permanent neighbour entries on every link, so counts do not depend on how many packets
    /// the kernel queues while it resolves an address (tests of that path delete them first).
    pub fn set_neighbours(&self) -> anyhow::Result<()> {
        let (p0, rp) = (mac(&self.pool, "p0")?, mac(&self.relay, "rp")?);
        let (rg, g0) = (mac(&self.relay, "rg")?, mac(&self.gw, "g0")?);
        for (ns, dev, ips, lladdr) in [
            (&self.relay, "rp", [POOL_PEER, POOL_PEER6, POOL_OTHER], &p0),
            (&self.relay, "rg", [GW_PEER, GW_PEER6, GW_PEER], &g0),
            (&self.pool, "p0", [POOL_RELAY, POOL_RELAY6, POOL_RELAY], &rp),
            (&self.gw, "g0", [GW_RELAY, GW_RELAY6, GW_RELAY], &rg),
        ] {
            for ip in ips {
                ns.ip(&[
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    lladdr,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        Ok(())
    }
}

pub fn mac(ns: &Netns, dev: &str) -> anyhow::Result<String> {
    let out = ns.ip(&["link", "show", "dev", dev])?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("no MAC address for {dev} in {}", ns.name))
}
