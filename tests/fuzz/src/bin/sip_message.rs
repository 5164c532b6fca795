//! afl.rs entry point: `cargo afl fuzz … target/release/sip_message` (see tests/fuzz/run).

fn main() {
    let target = mediator_fuzz::SipTarget::new();
    afl::fuzz!(|data: &[u8]| target.run(data));
}
