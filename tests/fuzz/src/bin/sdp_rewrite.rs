//! afl.rs entry point: `cargo afl fuzz … target/release/sdp_rewrite` (see tests/fuzz/run).

fn main() {
    afl::fuzz!(|data: &[u8]| mediator_fuzz::sdp(data));
}
