//! Golden tests of SDP rewriting, as rtpengine's suite has them: each `NAME.in.sdp` under
//! `tests/golden/sdp/` is rewritten as the relay would (IPv4 streams to 198.18.2.1, IPv6 ones to
//! 2001:2:0:2::1; anchored stream i gets RTP port 40000 + 2i, RTCP one above) and must equal
//! `NAME.out.sdp` byte for byte. The expected files were written by hand, not by the code.

use std::net::IpAddr;

use mediator_b2bua::sdp::{Anchor, Sdp};

#[test]
fn every_golden_case_rewrites_exactly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sdp");
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(case) = name.strip_suffix(".in.sdp") else {
            continue;
        };
        let input = std::fs::read_to_string(&path).expect("read in");
        let expected =
            std::fs::read_to_string(dir.join(format!("{case}.out.sdp"))).expect("read out");
        let sdp = Sdp::parse(&input).unwrap_or_else(|e| panic!("{case}: {e}"));
        let anchors: Vec<Option<Anchor>> = sdp
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let v6 = input.contains("IN IP6");
                let addr: IpAddr = if v6 { "2001:2:0:2::1" } else { "198.18.2.1" }
                    .parse()
                    .expect("ip");
                m.anchored().then_some(Anchor {
                    addr,
                    rtp_port: 40000 + 2 * i as u16,
                    rtcp_port: 40001 + 2 * i as u16,
                })
            })
            .collect();
        let out = sdp
            .rewrite(&anchors)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(out, expected, "golden case {case}");
        assert!(Sdp::parse(&out).is_ok(), "{case}: the rewrite parses");
        cases += 1;
    }
    assert!(cases >= 5, "golden cases found: {cases}");
}
