//! The SIPp fixture works in the lab: calls with G.711 RTP from SIPp's capture, SIPp to SIPp
//! across a lab link, complete and are counted. (Mediator's own call tests will put it between.)

use std::time::Duration;

use mediator_tests::lab::{GW_PEER, GW_RELAY, Lab, privileged};
use mediator_tests::sipp::{Uas, uac};

#[test]
fn sipp_places_calls_with_rtp_across_the_lab() {
    if !privileged("sipp_places_calls_with_rtp_across_the_lab") {
        return;
    }
    let lab = Lab::new("sip").expect("lab");
    let _uas = Uas::start(&lab.gw.name, GW_PEER, 5060, &[]).expect("uas");
    let run = uac(
        &lab.relay.name,
        GW_RELAY,
        &format!("{GW_PEER}:5060"),
        3,
        10,
        Duration::from_secs(30),
        &[],
    )
    .expect("uac");
    assert_eq!(
        (run.exit_code, run.successful, run.failed),
        (0, 3, 0),
        "{run:?}"
    );
}
