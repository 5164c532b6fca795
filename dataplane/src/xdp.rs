//! Loading and attaching the XDP relay program with aya, and the XDP [`Forwarder`].
//!
//! Maps are pinned by name under the pin directory and links are pinned as `link_<ifname>`, so a
//! killed daemon leaves forwarding running. At start an existing pinned link has its program
//! replaced atomically (`bpf_link_update`): not one packet sees a detached interface.

use std::collections::{BTreeMap, HashSet};
use std::mem::size_of;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::maps::{DevMapHash, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

use crate::abi::{self, StreamEntry, StreamKey, StreamStats};
use crate::config::{Config, XdpMode};
use crate::forwarder::{ForwardError, Forwarder};
use crate::netif;

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("bpffs: {0}")]
    Bpffs(String),
    #[error("loading the XDP program: {0}")]
    Load(String),
    #[error("attaching to {iface}: {reason}")]
    Attach { iface: String, reason: String },
}

/// The mode an interface's program runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    fn aya(self) -> AyaXdpMode {
        match self {
            AttachMode::Native => AyaXdpMode::Driver,
            AttachMode::Generic => AyaXdpMode::Skb,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Attached {
    pub name: String,
    pub ifindex: u32,
    pub mode: AttachMode,
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Makes sure /sys/fs/bpf is a bpffs (mounting it if needed) and the pin directory exists.
pub fn prepare_pin_dir(pin_dir: &Path) -> Result<(), XdpError> {
    let root = Path::new("/sys/fs/bpf");
    let mounting = pin_dir.starts_with(root) && !is_bpffs(root);
    if mounting {
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| {
            XdpError::Bpffs(format!(
                "/sys/fs/bpf is not a bpffs and mounting one failed: {e}"
            ))
        })?;
    }
    std::fs::create_dir_all(pin_dir)
        .map_err(|e| XdpError::Bpffs(format!("creating {}: {e}", pin_dir.display())))?;
    if !is_bpffs(pin_dir) {
        return Err(XdpError::Bpffs(format!(
            "{} is not on a bpffs",
            pin_dir.display()
        )));
    }
    let seen_by_host = std::fs::metadata(
        Path::new("/proc/1/root").join(pin_dir.strip_prefix("/").unwrap_or(pin_dir)),
    );
    // The namespace of the process that started us: `ip netns exec` makes one of our own.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let own_namespace = match (ns("self"), ns(&nix::unistd::getppid().to_string())) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    if let Err(why) = pins_outlive(
        pin_dir,
        std::fs::metadata(pin_dir).ok(),
        seen_by_host,
        mounting && own_namespace,
    ) {
        tracing::warn!("{why}");
    }
    Ok(())
}

/// Whether pins in `pin_dir` (`ours`: its metadata here) outlive this process: the host's mount
/// namespace (PID 1's, `host`: the same path's metadata there) must see the same bpffs. A
/// private mount namespace (`ip netns exec` makes one, with its own /sys) that mounted its own
/// bpffs loses it, and every pin in it, when its last process exits. Where the host's view
/// cannot be read (PID 1 out of reach, as in some containers), `mounted_in_own_namespace` —
/// this process mounted the bpffs, in a mount namespace its parent does not share — says the
/// same. Why not, when not.
fn pins_outlive(
    pin_dir: &Path,
    ours: Option<std::fs::Metadata>,
    host: std::io::Result<std::fs::Metadata>,
    mounted_in_own_namespace: bool,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some(ours) = ours else {
        return Ok(());
    };
    let private = match host {
        Ok(h) => h.dev() != ours.dev() || h.ino() != ours.ino(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => mounted_in_own_namespace,
    };
    if private {
        return Err(format!(
            "pin directory {} is on a bpffs the host's mount namespace does not see (a private \
             mount namespace, as `ip netns exec` makes): the XDP links, maps and sessions pinned \
             there will not outlive this process, so a restart cannot re-adopt them. Start the \
             daemon with `nsenter --net=/run/netns/NAME` (the network namespace only) instead",
            pin_dir.display()
        ));
    }
    Ok(())
}

fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{}", iface.replace('.', "_")))
}

/// Detaches a pinned link now and removes its pin. Unlinking the pin alone frees the link from a
/// deferred kernel work item, so an immediate re-attach to the interface could still find it busy.
fn detach_pinned_link(pin: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_DETACH: libc::c_long = 34;
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        /// The kernel insists that attr bytes it does not know are zero: no implicit padding.
        pad: u32,
    }
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
    }
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    // SAFETY: bpf(BPF_OBJ_GET) reads the attr we pass (and the NUL-terminated path it points to).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGet,
            size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let detach = LinkDetach { link_fd: fd as u32 };
    // SAFETY: bpf(BPF_LINK_DETACH) reads the attr we pass; fd is ours and closed right after.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &detach as *const LinkDetach,
            size_of::<LinkDetach>(),
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd BPF_OBJ_GET gave us.
    unsafe { libc::close(fd as i32) };
    std::fs::remove_file(pin)?;
    if rc < 0 { Err(err) } else { Ok(()) }
}

/// Removes every pinned link (detached at once) and map of a previous run (`--xdp-mode off`,
/// `--cleanup`).
pub fn remove_pins(pin_dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with("link_") {
            if let Err(e) = detach_pinned_link(&path) {
                tracing::warn!(pin = %path.display(), error = %e, "detaching a pinned link failed; unpinning it");
                let _ = std::fs::remove_file(&path);
            }
        } else {
            std::fs::remove_file(&path)?;
        }
        n += 1;
    }
    let _ = std::fs::remove_dir(pin_dir);
    Ok(n)
}

struct Maps {
    streams: BpfHashMap<MapData, StreamKey, StreamEntry>,
    stats: PerCpuArray<MapData, StreamStats>,
}

/// The kernel fast path: the loaded program, its pinned links and maps.
pub struct XdpForwarder {
    maps: Mutex<Maps>,
    ncpus: usize,
    capacity: u32,
    attached: Vec<Attached>,
    /// Local media addresses whose packets reach the program: on an attached interface or on a
    /// VLAN device on top of one (the program parses one 802.1Q tag).
    ingress_ok: HashSet<IpAddr>,
    /// Local media addresses the program can send from: on an attached interface itself (it strips
    /// a tag but cannot push one).
    egress_ok: HashSet<IpAddr>,
    _ebpf: Ebpf,
}

/// The mode each interface ran in last time, so a re-adopted link reports it truthfully.
fn modes_file(state_dir: &Path) -> PathBuf {
    state_dir.join("xdp-links.json")
}

impl XdpForwarder {
    /// Loads the program (re-using pinned maps), attaches it to every configured interface (native
    /// first where allowed, generic where refused) or re-adopts a pinned link, and pins the links.
    pub fn start(cfg: &Config) -> Result<Self, XdpError> {
        prepare_pin_dir(&cfg.pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&cfg.pin_dir)
            .map_max_entries(abi::MAP_STREAMS, cfg.max_streams)
            .map_max_entries(abi::MAP_STATS, cfg.max_streams)
            .load(crate::RELAY_OBJECT)
            .map_err(|e| XdpError::Load(e.to_string()))?;
        let program: &mut Xdp = ebpf
            .program_mut(abi::PROG_RELAY)
            .ok_or_else(|| XdpError::Load("program mdp_relay missing from the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
        program
            .load()
            .map_err(|e| XdpError::Load(format!("{e:#}")))?;

        let mut modes: BTreeMap<String, AttachMode> = std::fs::read(modes_file(&cfg.state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // One mode on every interface: a native redirect into a device that only runs generic XDP
        // could fail after the rewrite and lose the packet. In auto, native where all allow it.
        let order: &[AttachMode] = match cfg.xdp_mode {
            XdpMode::Native => &[AttachMode::Native],
            XdpMode::Generic => &[AttachMode::Generic],
            _ => &[AttachMode::Native, AttachMode::Generic],
        };
        let mut attached = Vec::new();
        let mut last_err = None;
        for (n, &mode) in order.iter().enumerate() {
            match attach_all(program, cfg, mode, &modes) {
                Ok(a) => {
                    attached = a;
                    last_err = None;
                    break;
                }
                Err(e) => {
                    if n + 1 < order.len() {
                        tracing::warn!(error = %e, ?mode, "XDP attach refused; trying the next mode on every interface");
                    }
                    last_err = Some(e);
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        modes = attached.iter().map(|a| (a.name.clone(), a.mode)).collect();
        if let Ok(json) = serde_json::to_vec(&modes) {
            let _ = std::fs::create_dir_all(&cfg.state_dir);
            let _ = std::fs::write(modes_file(&cfg.state_dir), json);
        }

        let mut tx: DevMapHash<MapData> = DevMapHash::try_from(
            ebpf.take_map(abi::MAP_TX_PORTS)
                .ok_or_else(|| XdpError::Load("map mdp_tx_ports missing".into()))?,
        )
        .map_err(|e| XdpError::Load(e.to_string()))?;
        for a in &attached {
            tx.insert(a.ifindex, a.ifindex, None, 0)
                .map_err(|e| XdpError::Load(format!("adding {} to mdp_tx_ports: {e}", a.name)))?;
        }
        let streams = BpfHashMap::try_from(
            ebpf.take_map(abi::MAP_STREAMS)
                .ok_or_else(|| XdpError::Load("map mdp_streams missing".into()))?,
        )
        .map_err(|e| XdpError::Load(e.to_string()))?;
        let stats: PerCpuArray<MapData, StreamStats> = PerCpuArray::try_from(
            ebpf.take_map(abi::MAP_STATS)
                .ok_or_else(|| XdpError::Load("map mdp_stats missing".into()))?,
        )
        .map_err(|e| XdpError::Load(e.to_string()))?;
        let capacity = stats.len().min(cfg.max_streams);
        if stats.len() != cfg.max_streams {
            tracing::warn!(
                pinned = stats.len(),
                configured = cfg.max_streams,
                "pinned maps from an earlier run keep their size; remove the pins to resize"
            );
        }
        let ncpus =
            aya::util::nr_cpus().map_err(|(what, e)| XdpError::Load(format!("{what}: {e}")))?;
        let names: HashSet<&str> = attached.iter().map(|a| a.name.as_str()).collect();
        let (mut ingress_ok, mut egress_ok) = (HashSet::new(), HashSet::new());
        for &addr in cfg.pool_addresses.iter().chain(&cfg.gateway_addresses) {
            let Some(owner) = netif::owner_of(addr) else {
                continue;
            };
            if names.contains(owner.as_str()) {
                ingress_ok.insert(addr);
                egress_ok.insert(addr);
            } else if netif::vlan_parent(&owner).is_some_and(|p| names.contains(p.as_str())) {
                tracing::info!(%addr, vlan = owner, "media address on a VLAN device: XDP serves it on ingress only");
                ingress_ok.insert(addr);
            }
        }
        Ok(Self {
            maps: Mutex::new(Maps { streams, stats }),
            ncpus,
            capacity,
            attached,
            ingress_ok,
            egress_ok,
            _ebpf: ebpf,
        })
    }

    pub fn attached(&self) -> &[Attached] {
        &self.attached
    }
}

/// bpf_fib_lookup answers FWD_DISABLED on an ingress device whose forwarding is off, and every
/// packet would go up to userspace. Turn it on (per interface only) or say why XDP will not forward.
fn forwarding(iface: &str, enable: bool) {
    for family in ["ipv4", "ipv6"] {
        let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
        let on = std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1");
        if on {
            continue;
        }
        if !enable {
            tracing::warn!(
                iface,
                family,
                "forwarding is off and enable_forwarding = false: the XDP FIB lookup \
                will refuse and these streams will be relayed in userspace"
            );
            continue;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => tracing::info!(
                iface,
                family,
                "forwarding enabled on the interface (needed by the XDP FIB lookup)"
            ),
            Err(e) => {
                tracing::warn!(iface, family, error = %e, "cannot enable forwarding; XDP will pass packets up")
            }
        }
    }
}

/// Attaches (or re-adopts) the program on every configured interface in `mode`. On a refusal the
/// links made by this call are removed again, so the caller can try another mode cleanly.
fn attach_all(
    program: &mut Xdp,
    cfg: &Config,
    mode: AttachMode,
    previous: &BTreeMap<String, AttachMode>,
) -> Result<Vec<Attached>, XdpError> {
    let mut attached = Vec::new();
    for iface in &cfg.interfaces {
        forwarding(iface, cfg.enable_forwarding);
        let result = (|| {
            let ifindex = netif::ifindex(iface).ok_or_else(|| "no such interface".to_string())?;
            let pin = link_pin(&cfg.pin_dir, iface);
            if pin.exists() && previous.get(iface) == Some(&mode) {
                replace_program(program, &pin)?;
                tracing::info!(
                    iface,
                    ?mode,
                    "re-adopted the pinned XDP link (program replaced atomically)"
                );
            } else {
                if pin.exists() {
                    // A link of another mode from an earlier run: off first, or the attach is refused.
                    detach_pinned_link(&pin)
                        .map_err(|e| format!("detaching the earlier link: {e}"))?;
                }
                attach_and_pin(program, ifindex, mode, &pin)?;
                tracing::info!(iface, ?mode, "XDP program attached");
            }
            Ok::<_, String>(ifindex)
        })();
        match result {
            Ok(ifindex) => attached.push(Attached {
                name: iface.clone(),
                ifindex,
                mode,
            }),
            Err(reason) => {
                tracing::warn!(iface, ?mode, error = %reason, "XDP attach refused");
                for a in &attached {
                    let pin = link_pin(&cfg.pin_dir, &a.name);
                    if let Err(e) = detach_pinned_link(&pin) {
                        tracing::warn!(pin = %pin.display(), error = %e, "detaching a link failed; unpinning it");
                        let _ = std::fs::remove_file(&pin);
                    }
                }
                return Err(XdpError::Attach {
                    iface: iface.clone(),
                    reason,
                });
            }
        }
    }
    Ok(attached)
}

/// An error with its causes ("bpf_link_create failed: Device or resource busy").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn attach_and_pin(
    program: &mut Xdp,
    ifindex: u32,
    mode: AttachMode,
    pin: &Path,
) -> Result<(), String> {
    let id = program
        .attach_to_if_index(ifindex, mode.aya())
        .map_err(|e| error_chain(&e))?;
    let link = program.take_link(id).map_err(|e| e.to_string())?;
    match FdLink::try_from(link) {
        Ok(fd) => {
            fd.pin(pin).map_err(|e| format!("pinning the link: {e}"))?;
            Ok(())
        }
        Err(_) => Err("the kernel gave a netlink attachment, which cannot be pinned".into()),
    }
}

fn replace_program(program: &mut Xdp, pin: &Path) -> Result<(), String> {
    let pinned = PinnedLink::from_pin(pin).map_err(|e| format!("opening pinned link: {e}"))?;
    let fd = pinned.unpin().map_err(|e| format!("unpinning: {e}"))?;
    let link = XdpLink::try_from(fd).map_err(|e| format!("not an XDP link: {e}"))?;
    let id = program
        .attach_to_link(link)
        .map_err(|e| format!("bpf_link_update: {e}"))?;
    let link = program.take_link(id).map_err(|e| e.to_string())?;
    let fd = FdLink::try_from(link).map_err(|e| e.to_string())?;
    fd.pin(pin)
        .map_err(|e| format!("re-pinning the link: {e}"))?;
    Ok(())
}

impl Forwarder for XdpForwarder {
    fn can_offload(&self, ingress: IpAddr, egress: IpAddr) -> Result<(), &'static str> {
        if !self.ingress_ok.contains(&ingress) {
            return Err("xdp not attached on the ingress interface");
        }
        if !self.egress_ok.contains(&egress) {
            return Err("egress interface not served by xdp (not attached, or a VLAN device)");
        }
        Ok(())
    }

    fn capacity(&self) -> u32 {
        self.capacity
    }

    fn install(&self, key: StreamKey, entry: StreamEntry) -> Result<(), ForwardError> {
        let mut maps = self.maps.lock().map_err(|_| ForwardError::Poisoned)?;
        maps.streams
            .insert(key, entry, 0)
            .map_err(|e| ForwardError::Map(e.to_string()))
    }

    fn remove(&self, key: &StreamKey) -> Result<(), ForwardError> {
        let mut maps = self.maps.lock().map_err(|_| ForwardError::Poisoned)?;
        match maps.streams.remove(key) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(ForwardError::Map(e.to_string())),
        }
    }

    fn reset_stats(&self, slot: u32) -> Result<(), ForwardError> {
        let mut maps = self.maps.lock().map_err(|_| ForwardError::Poisoned)?;
        let zero = PerCpuValues::try_from(vec![StreamStats::default(); self.ncpus])
            .map_err(|e| ForwardError::Map(e.to_string()))?;
        maps.stats
            .set(slot, zero, 0)
            .map_err(|e| ForwardError::Map(e.to_string()))
    }

    fn read_stats(&self, slot: u32) -> Result<Vec<StreamStats>, ForwardError> {
        let maps = self.maps.lock().map_err(|_| ForwardError::Poisoned)?;
        let v = maps
            .stats
            .get(&slot, 0)
            .map_err(|e| ForwardError::Map(e.to_string()))?;
        Ok(v.iter().copied().collect())
    }

    fn entries(&self) -> Result<Vec<(StreamKey, StreamEntry)>, ForwardError> {
        let maps = self.maps.lock().map_err(|_| ForwardError::Poisoned)?;
        maps.streams
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ForwardError::Map(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_outlive_only_where_the_host_sees_the_same_directory() {
        let a = std::env::temp_dir();
        let b = Path::new("/");
        let meta = |p: &Path| std::fs::metadata(p);
        assert_eq!(pins_outlive(&a, meta(&a).ok(), meta(&a), true), Ok(()));
        let why = pins_outlive(&a, meta(&a).ok(), meta(b), false).expect_err("another directory");
        assert!(
            why.contains("will not outlive") && why.contains("nsenter --net="),
            "{why}"
        );
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(
            pins_outlive(&a, meta(&a).ok(), Err(gone), false).is_err(),
            "not there"
        );
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            pins_outlive(&a, meta(&a).ok(), Err(denied()), false),
            Ok(()),
            "the host's view unreadable, and the bpffs not ours"
        );
        assert!(
            pins_outlive(&a, meta(&a).ok(), Err(denied()), true).is_err(),
            "mounted by this process in a namespace of its own"
        );
    }
}
