//! Network interface facts the dataplane needs: names to indexes, and which interface owns an address.

use std::net::IpAddr;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::if_nametoindex;

pub fn ifindex(name: &str) -> Option<u32> {
    if_nametoindex(name).ok().filter(|&i| i != 0)
}

/// The interface that holds `addr`, if any.
pub fn owner_of(addr: IpAddr) -> Option<String> {
    let addrs = getifaddrs().ok()?;
    for ifa in addrs {
        let Some(sa) = ifa.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip == addr {
            return Some(ifa.interface_name);
        }
    }
    None
}
