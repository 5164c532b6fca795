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

/// The device a VLAN interface sits on, from /proc/net/vlan/config (present once the 8021q module
/// is loaded, i.e. whenever a VLAN device exists).
pub fn vlan_parent(name: &str) -> Option<String> {
    let config = std::fs::read_to_string("/proc/net/vlan/config").ok()?;
    parse_vlan_config(&config, name)
}

fn parse_vlan_config(config: &str, name: &str) -> Option<String> {
    config.lines().skip(2).find_map(|line| {
        let mut cols = line.split('|').map(str::trim);
        let (dev, _vid, parent) = (cols.next()?, cols.next()?, cols.next()?);
        (dev == name).then(|| parent.to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_vlan_parent() {
        let config = "VLAN Dev name\t | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
                      rp.100         | 100  | rp\neth0.7         | 7  | eth0\n";
        assert_eq!(
            super::parse_vlan_config(config, "eth0.7").as_deref(),
            Some("eth0")
        );
        assert_eq!(super::parse_vlan_config(config, "rp"), None);
    }
}
