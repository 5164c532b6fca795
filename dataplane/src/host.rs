//! The host's own addresses, and the rule that keeps media off them: a session's remote endpoint
//! may not be loopback or any address of this host (its network namespace), or one gRPC call
//! could aim relayed packets at the host's own services (its SIP port, a local database). The
//! one exception is a relay whose media address on that side is itself loopback: a single-host
//! lab, where every peer is on loopback and nothing else can be reached.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read of the interface addresses is used before it is read again: an address
/// added to the host is refused as a remote endpoint within this long.
const REFRESH: Duration = Duration::from_secs(1);

/// The addresses of the host's interfaces, read with `getifaddrs` at most once per [`REFRESH`].
#[derive(Default)]
pub struct HostAddrs {
    cache: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl HostAddrs {
    /// Whether `ip` is an address of one of this host's interfaces (as of the last read).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let stale = cache.as_ref().is_none_or(|(at, _)| at.elapsed() >= REFRESH);
        if stale {
            *cache = Some((Instant::now(), read()));
        }
        cache.as_ref().is_some_and(|(_, addrs)| addrs.contains(&ip))
    }
}

fn read() -> Vec<IpAddr> {
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    ifaddrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Why `remote` may not be a remote endpoint of a leg whose relay address is `local`, or `None`
/// when it may. `is_host` says whether an address is one of this host's.
pub fn refuse_remote(
    remote: IpAddr,
    local: IpAddr,
    is_host: impl Fn(IpAddr) -> bool,
) -> Option<String> {
    if local.is_loopback() {
        // A relay on loopback can reach nothing else: its peers are this host by design.
        return None;
    }
    if remote.is_loopback() {
        return Some(format!(
            "{remote} is loopback: media is never relayed into this host"
        ));
    }
    if is_host(remote) {
        return Some(format!(
            "{remote} is an address of this host: media is never relayed into this host"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn loopback_and_host_addresses_are_refused_off_a_loopback_relay() {
        let host = |a: IpAddr| a == ip("198.18.2.1") || a == ip("2001:2::1");
        let local = ip("198.18.1.1");
        for (remote, why) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("198.18.2.1", "an address of this host"),
            ("2001:2::1", "an address of this host"),
        ] {
            let got = refuse_remote(ip(remote), local, host).expect(remote);
            assert!(got.contains(why) && got.contains(remote), "{got}");
        }
        assert_eq!(refuse_remote(ip("198.18.1.9"), local, host), None);
    }

    #[test]
    fn a_relay_on_loopback_may_relay_to_loopback() {
        assert_eq!(
            refuse_remote(ip("127.0.0.1"), ip("127.0.0.1"), |_| true),
            None
        );
    }

    #[test]
    fn the_host_s_loopback_address_is_read() {
        assert!(HostAddrs::default().contains(ip("127.0.0.1")));
        assert!(!HostAddrs::default().contains(ip("198.19.255.254")));
    }
}
