//! Attaching the XDP program: `auto` takes native where every driver allows it and otherwise
//! generic on every interface (loopback has no native XDP), and says so; an explicit `native` that is
//! refused stops the daemon with an error naming the interface.

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::Daemon;
use mediator_tests::fixture::sa;
use mediator_tests::lab::{Netns, privileged};

#[rustfmt::skip]
fn args(mode: &str) -> Vec<&str> {
    vec!["--xdp-mode", mode, "--interface", "v0", "--interface", "lo",
         "--pool-address", "127.0.0.1", "--gateway-address", "127.0.0.1"]
}

/// A namespace with a veth pair (v0 can run native XDP) besides its loopback (it cannot).
fn netns(tag: &str) -> Netns {
    let ns = Netns::new(&format!("mdp{}{tag}", std::process::id())).expect("netns");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        .expect("veth");
    ns.ip(&["link", "set", "v0", "up"]).expect("up");
    ns.ip(&["link", "set", "v1", "up"]).expect("up");
    ns
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_generic_where_native_is_refused() {
    if !privileged("auto_falls_back_to_generic_where_native_is_refused") {
        return;
    }
    let ns = netns("att");
    let mut d = Daemon::start(
        "attach-auto",
        Some(&ns.name),
        sa("127.0.0.1", 7400),
        &args("auto"),
    )
    .expect("daemon");
    let mut c = d.client().await.expect("client");
    let caps = c
        .get_capabilities(pb::GetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    assert_eq!(
        caps.xdp_mode,
        pb::XdpMode::Generic as i32,
        "{}",
        caps.xdp_note
    );
    // v0 could run native, but one mode holds everywhere: a native redirect into a device that
    // only runs generic XDP could lose the rewritten packet.
    let got: Vec<(&str, i32)> = caps
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.mode))
        .collect();
    assert_eq!(
        got,
        [
            ("v0", pb::XdpMode::Generic as i32),
            ("lo", pb::XdpMode::Generic as i32)
        ]
    );
    assert_eq!(caps.xdp_note, "v0: generic, lo: generic");
    assert!(
        d.log().contains("XDP attach refused"),
        "the refusal of native is logged:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_native_that_is_refused_is_an_error() {
    if !privileged("explicit_native_that_is_refused_is_an_error") {
        return;
    }
    let ns = netns("atn");
    let mut d = Daemon::start(
        "attach-native",
        Some(&ns.name),
        sa("127.0.0.1", 7400),
        &args("native"),
    )
    .expect("daemon");
    let err = d.client().await.expect_err("the daemon must not start");
    let text = err.to_string();
    assert!(text.contains("attaching to lo"), "{text}");
    assert!(
        text.contains("--xdp-mode auto"),
        "says how to fall back: {text}"
    );
}
