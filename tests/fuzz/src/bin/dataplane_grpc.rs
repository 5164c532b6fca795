//! afl.rs entry point: `cargo afl fuzz … target/release/dataplane_grpc` (see tests/fuzz/run).

fn main() {
    // A panic is the crash afl records; the relay is made anew by the next process.
    let target = std::panic::AssertUnwindSafe(mediator_fuzz::DataplaneTarget::new());
    afl::fuzz!(|data: &[u8]| target.run(data));
}
