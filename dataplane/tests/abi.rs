//! Proves that `src/abi.rs` matches `ebpf/relay_abi.h`: every struct's size and every field's offset
//! are read from the BTF that clang put into the compiled object, and compared with the Rust side.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use mediator_dataplane::abi::{
    FloorCfg, InjectCfg, InjectStream, StreamEntry, StreamKey, StreamStats,
};
use object::{Object, ObjectSection};

/// name → (size, [(field, byte offset)]) for every named struct in the BTF.
fn btf_structs(btf: &[u8]) -> HashMap<String, (u32, Vec<(String, u32)>)> {
    let u16_at = |o: usize| u16::from_le_bytes([btf[o], btf[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(btf[o..o + 4].try_into().expect("4 bytes"));
    assert_eq!(
        u16_at(0),
        0xeb9f,
        "BTF magic (little-endian object expected)"
    );
    let hdr_len = u32_at(4) as usize;
    let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
    let str_off = u32_at(16) as usize;
    let types = hdr_len + type_off;
    let strs = hdr_len + str_off;
    let name = |off: u32| {
        let start = strs + off as usize;
        let end = btf[start..].iter().position(|&b| b == 0).expect("NUL") + start;
        String::from_utf8_lossy(&btf[start..end]).into_owned()
    };
    let mut out = HashMap::new();
    let mut p = types;
    while p < types + type_len {
        let (name_off, info, size) = (u32_at(p), u32_at(p + 4), u32_at(p + 8));
        let (kind, vlen, kflag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
        p += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            4 | 5 => 12 * vlen,   // STRUCT, UNION
            6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen, // DATASEC, ENUM64
            _ => 0,
        };
        if kind == 4 && name_off != 0 {
            let fields = (0..vlen)
                .map(|i| {
                    let m = p + 12 * i;
                    let bits = u32_at(m + 8);
                    let bits = if kflag == 1 { bits & 0xff_ffff } else { bits };
                    assert_eq!(bits % 8, 0, "bitfields are not part of the ABI");
                    (name(u32_at(m)), bits / 8)
                })
                .collect();
            out.insert(name(name_off), (size, fields));
        }
        p += extra;
    }
    out
}

macro_rules! check_struct {
    ($structs:expr, $c:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
        let (size, fields) = $structs.get($c).unwrap_or_else(|| panic!("struct {} not in BTF", $c));
        assert_eq!(*size as usize, size_of::<$rust>(), "size of struct {}", $c);
        let rust_fields: Vec<(String, u32)> =
            vec![$((stringify!($field).to_string(), offset_of!($rust, $field) as u32)),*];
        assert_eq!(fields, &rust_fields, "fields and offsets of struct {}", $c);
    }};
}

#[test]
fn rust_mirror_matches_the_c_header() {
    let obj = object::File::parse(mediator_dataplane::RELAY_OBJECT).expect("parse relay.bpf.o");
    let btf = obj
        .section_by_name(".BTF")
        .expect(".BTF section")
        .data()
        .expect("BTF data");
    let structs = btf_structs(btf);
    check_struct!(
        structs,
        "mdp_stream_key",
        StreamKey,
        [addr, port, family, pad]
    );
    check_struct!(
        structs,
        "mdp_stream_entry",
        StreamEntry,
        [
            expect_addr,
            src_addr,
            dst_addr,
            expect_port,
            src_port,
            dst_port,
            family,
            policy,
            stats_slot,
            clock_rate,
            flags,
            pad
        ]
    );
    check_struct!(
        structs,
        "mdp_stream_stats",
        StreamStats,
        [
            packets,
            bytes,
            last_seen_ns,
            src_mismatch,
            ssrc,
            rtp_packets,
            base_seq,
            max_seq,
            jitter_q4,
            last_transit,
            rtp_init,
            rtcp_seen_s
        ]
    );
    check_struct!(
        structs,
        "mdp_floor_cfg",
        FloorCfg,
        [
            src_mac, dst_mac, src_addr, dst_addr, src_port, dst_port, port_min, port_max, ifindex,
            in_ifindex
        ]
    );
    check_struct!(
        structs,
        "mdp_inject_cfg",
        InjectCfg,
        [
            made, start_ns, streams, ifindex, samples, rate, burst, bursting, base_check, pad,
            pad2, head, pad3
        ]
    );
    check_struct!(
        structs,
        "mdp_inject_stream",
        InjectStream,
        [ssrc, probe_id, dst_port, pad]
    );
}

#[test]
fn map_names_and_constants_match_the_c_header() {
    let header = include_str!("../../ebpf/relay_abi.h");
    use mediator_dataplane::abi::*;
    for (name, value) in [
        ("MDP_MAP_STREAMS", format!("\"{MAP_STREAMS}\"")),
        ("MDP_MAP_STATS", format!("\"{MAP_STATS}\"")),
        ("MDP_MAP_TX_PORTS", format!("\"{MAP_TX_PORTS}\"")),
        ("MDP_MAP_FLOOR", format!("\"{MAP_FLOOR}\"")),
        ("MDP_MAP_INJECT_CFG", format!("\"{MAP_INJECT_CFG}\"")),
        (
            "MDP_MAP_INJECT_STREAMS",
            format!("\"{MAP_INJECT_STREAMS}\""),
        ),
        ("MDP_PROBE_MAGIC", format!("0x{PROBE_MAGIC:x}")),
        ("MDP_DEFAULT_MAX_STREAMS", DEFAULT_MAX_STREAMS.to_string()),
        ("MDP_MAX_TX_PORTS", MAX_TX_PORTS.to_string()),
        ("MDP_AF_INET", AF_INET.to_string()),
        ("MDP_AF_INET6", AF_INET6.to_string()),
        ("MDP_POLICY_ACCEPT_ANY", POLICY_ACCEPT_ANY.to_string()),
        ("MDP_POLICY_DROP_MISMATCH", POLICY_DROP_MISMATCH.to_string()),
        ("MDP_POLICY_PASS_MISMATCH", POLICY_PASS_MISMATCH.to_string()),
        ("MDP_FLAG_RTP_STATS", format!("0x{FLAG_RTP_STATS:x}")),
        ("MDP_RELAY_TTL", RELAY_TTL.to_string()),
    ] {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not defined in relay_abi.h"));
        let defined = line.split_whitespace().nth(2).expect("value");
        assert_eq!(defined, value, "{name}");
    }
}
