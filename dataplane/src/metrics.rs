//! The relay's Prometheus metrics, read at scrape time from the manager (the same figures as
//! GetStats and GetCapabilities): packets and bytes per path, sessions, free ports, offloaded
//! streams, the XDP mode, source mismatches, drops, socket overflows, media and RTCP timeouts,
//! sessions whose owner's lease lapsed. No per-session labels: cardinality is fixed.

use std::borrow::Cow;
use std::sync::Arc;

use mediator_proto::dataplane::v1 as pb;
use mediator_serve::prometheus_client::collector::Collector;
use mediator_serve::prometheus_client::encoding::DescriptorEncoder;
use mediator_serve::prometheus_client::registry::Registry;
use mediator_serve::{Labels, counter, gauge};

use crate::manager::Dataplane;

struct Relay {
    dp: Arc<Dataplane>,
    mode: &'static str,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("mode", &self.mode).finish()
    }
}

fn none() -> Labels<'static> {
    Vec::new()
}

fn path(p: &'static str) -> Labels<'static> {
    vec![("path", Cow::Borrowed(p))]
}

impl Collector for Relay {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let t = self.dp.totals();
        counter(
            &mut enc,
            "mediator_dataplane_packets",
            "Packets relayed, by path (xdp, userspace)",
            &[
                (path("xdp"), t.xdp_packets),
                (path("userspace"), t.user_packets),
            ],
        )?;
        counter(
            &mut enc,
            "mediator_dataplane_bytes",
            "Payload bytes relayed, by path",
            &[
                (path("xdp"), t.xdp_bytes),
                (path("userspace"), t.user_bytes),
            ],
        )?;
        counter(
            &mut enc,
            "mediator_dataplane_source_mismatches",
            "Packets from a source other than the expected peer (strict source drops them)",
            &[(none(), t.src_mismatch)],
        )?;
        counter(
            &mut enc,
            "mediator_dataplane_dropped",
            "Packets dropped (no destination yet, strict source)",
            &[(none(), t.dropped)],
        )?;
        counter(
            &mut enc,
            "mediator_dataplane_socket_overflows",
            "Packets the kernel dropped on full relay sockets (SO_RXQ_OVFL)",
            &[(none(), t.socket_overflow)],
        )?;
        let reason = |r: &'static str| vec![("reason", Cow::Borrowed(r))];
        counter(
            &mut enc,
            "mediator_dataplane_srtp_drops",
            "Packets SRTP termination dropped, by reason (auth: the tag did not verify; replay; bad_mki; other)",
            &[
                (reason("auth"), t.srtp.auth_failures),
                (reason("replay"), t.srtp.replays),
                (reason("bad_mki"), t.srtp.bad_mki),
                (reason("other"), t.srtp.other),
            ],
        )?;
        let [media, rtcp] = self.dp.timeouts_raised();
        counter(
            &mut enc,
            "mediator_dataplane_timeouts",
            "Timeout events raised, by kind (media, rtcp)",
            &[
                (vec![("kind", Cow::Borrowed("media"))], media),
                (vec![("kind", Cow::Borrowed("rtcp"))], rtcp),
            ],
        )?;
        counter(
            &mut enc,
            "mediator_dataplane_lease_expired_sessions",
            "Sessions deleted because their owner's lease lapsed",
            &[(none(), self.dp.lease_expired_sessions())],
        )?;
        gauge(
            &mut enc,
            "mediator_dataplane_sessions",
            "Sessions held",
            &[(none(), self.dp.session_count() as i64)],
        )?;
        gauge(
            &mut enc,
            "mediator_dataplane_free_ports",
            "Free media ports",
            &[(none(), i64::from(self.dp.free_ports()))],
        )?;
        gauge(
            &mut enc,
            "mediator_dataplane_offloaded_streams",
            "Streams forwarded by XDP",
            &[(none(), i64::from(self.dp.offloaded_streams()))],
        )?;
        gauge(
            &mut enc,
            "mediator_dataplane_xdp_mode",
            "The XDP mode in force (1 for the mode label that is)",
            &[(vec![("mode", Cow::Borrowed(self.mode))], 1)],
        )?;
        Ok(())
    }
}

/// The registry `/metrics` serves for relay `dp` with XDP mode `mode` in force.
pub fn registry(dp: Arc<Dataplane>, mode: pb::XdpMode) -> Registry {
    let mode = match mode {
        pb::XdpMode::Native => "native",
        pb::XdpMode::Generic => "generic",
        _ => "off",
    };
    let mut r = Registry::default();
    r.register_collector(Box::new(Relay { dp, mode }));
    r
}
