//! A short run of mediator-bench end to end (the README's harness, small N, a second per run): every
//! mode, both generators, sessions set up through SIP, valid JSON and SVG, and nothing lost at a
//! gentle rate. The figures themselves are not judged here: timed results belong to the harness,
//! not to the test suite.

use std::path::Path;
use std::process::Command;

use mediator_bench::rtpengine;
use mediator_tests::daemon::built_binary;
use mediator_tests::lab::privileged;

fn run(args: &[&str], dir: &Path) -> (serde_json::Value, (usize, usize)) {
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let out = Command::new(built_binary("mediator-bench"))
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run mediator-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mediator-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CPU/pkt ns"), "a table: {stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("valid JSON");
    let text = std::fs::read_to_string(&svg).expect("SVG written");
    (doc, shapes(&text))
}

/// (circles, polylines) in a well-formed SVG document.
fn shapes(text: &str) -> (usize, usize) {
    let doc = roxmltree::Document::parse(text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    (count("circle"), count("polyline"))
}

fn runs(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["runs"].as_array().expect("runs")
}

#[test]
fn a_short_run_of_every_mode_produces_valid_json_and_svg() {
    if !privileged("a_short_run_of_every_mode_produces_valid_json_and_svg") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mediator-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut modes = vec![
        "xdp-floor",
        "xdp-native",
        "xdp-generic",
        "bare-relay",
        "userspace",
        // SRTP terminated by the userspace relay, and passed through XDP: the peers protect and
        // verify every packet, so nothing counts as forwarded unless it decrypts.
        "userspace-srtp",
        "xdp-passthrough",
    ];
    if rtpengine::binary().is_some() {
        modes.push("rtpengine");
        modes.push("rtpengine-srtp");
    }
    let list = modes.join(",");

    // Every mode, 10 sessions of G.711 at their real-time rate (1000 packets/s both ways).
    let (doc, svg) = run(
        &[
            "--modes",
            &list,
            "--sessions",
            "10",
            "--seconds",
            "1",
            "--repeat",
            "1",
        ],
        &dir,
    );
    assert_eq!(doc["plan"], "compare");
    assert_eq!(runs(&doc).len(), modes.len(), "{doc:#}");
    for r in runs(&doc) {
        let offered = r["offered"].as_u64().expect("offered");
        assert!(offered >= 900, "about a second at 1000 packets/s: {r:#}");
        assert_eq!(
            r["forwarded"], r["offered"],
            "nothing lost at a gentle rate: {r:#}"
        );
        assert_eq!(r["duplicates"], 0, "{r:#}");
        assert!(r["relay_cpu_ns"].as_u64().expect("cpu") > 0, "{r:#}");
        let lat = &r["latency_ns"];
        assert!(
            lat["p50"].as_u64() <= lat["p99"].as_u64()
                && lat["p99"].as_u64() <= lat["p999"].as_u64()
                && lat["p50"].as_u64() > Some(0),
            "{r:#}"
        );
    }
    let native = doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["mode"] == "xdp-native")
        .expect("xdp-native group");
    assert_eq!(native["floor"], "xdp-floor");
    assert!(native["ratio_to_floor"].as_f64().is_some(), "{native:#}");
    // One point per mode: markers in both panels, no lines yet.
    assert_eq!(svg, (2 * modes.len(), 0));

    // The live-frame injector, and a rate sweep: lines in the chart.
    let (doc, svg) = run(
        &[
            "--modes",
            "xdp-native,bare-relay",
            "--sessions",
            "10",
            "--generator",
            "inject",
            "--sweep",
            "rate",
            "--rate",
            "2000",
            "--max-rate",
            "3000",
            "--seconds",
            "1",
        ],
        &dir,
    );
    assert_eq!(doc["plan"], "rate");
    for r in runs(&doc) {
        assert_eq!(r["generator"], "inject");
        assert!(r["forwarded"].as_u64() > Some(0), "{r:#}");
    }
    for m in doc["modes"].as_array().expect("modes") {
        assert!(
            m["loss_free_max_pps"].as_f64().is_some(),
            "a loss-free rate for each mode: {m:#}"
        );
    }
    assert_eq!(svg.1, 4, "two modes, two panels");

    // --via-sip: the sessions as SIP calls through mediator-control (SIPp on both sides), Opus
    // in the SDP and the RTP. The harness ends the calls through the API and fails unless both
    // SIPp instances count every call as completed with its BYE.
    let (doc, _) = run(
        &[
            "--modes",
            "xdp-native,userspace",
            "--via-sip",
            "--codec",
            "opus",
            "--sessions",
            "10",
            "--seconds",
            "1",
            "--repeat",
            "1",
        ],
        &dir,
    );
    assert_eq!(doc["settings"]["via_sip"], true);
    let notes = doc["notes"].to_string();
    for mode in ["xdp-native", "userspace"] {
        assert!(
            notes.contains(&format!(
                "{mode}: 10 sessions set up as SIP calls through mediator-control"
            )),
            "{notes}"
        );
    }
    assert_eq!(runs(&doc).len(), 2);
    for r in runs(&doc) {
        assert!(r["offered"].as_u64() > Some(0), "{r:#}");
        assert_eq!(r["forwarded"], r["offered"], "nothing lost: {r:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
