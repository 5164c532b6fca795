//! Attaching the XDP program: `auto` takes native where the driver allows it and falls back to
//! generic where it refuses (loopback has no native XDP), and says so; an explicit `native` that is
//! refused stops the daemon with an error naming the interface.

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::Daemon;
use mediator_tests::fixture::sa;
use mediator_tests::lab::{Netns, privileged};

fn args(mode: &str) -> Vec<&str> {
    vec![
        "--xdp-mode",
        mode,
        "--interface",
        "lo",
        "--pool-address",
        "127.0.0.1",
        "--gateway-address",
        "127.0.0.1",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_generic_where_native_is_refused() {
    if !privileged("auto_falls_back_to_generic_where_native_is_refused") {
        return;
    }
    let ns = Netns::new(&format!("mdp{}att", std::process::id())).expect("netns");
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
    assert_eq!(caps.interfaces.len(), 1);
    assert_eq!(
        (caps.interfaces[0].name.as_str(), caps.interfaces[0].mode),
        ("lo", pb::XdpMode::Generic as i32)
    );
    assert_eq!(caps.xdp_note, "lo: generic");
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
    let ns = Netns::new(&format!("mdp{}atn", std::process::id())).expect("netns");
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
