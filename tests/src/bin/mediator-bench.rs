//! `mediator-bench`: relay CPU per forwarded packet for the XDP path, the userspace relay and their
//! floors (a trivial XDP redirect program, a bare recvmmsg/sendmmsg relay), side by side in one run
//! in the namespace lab. Needs root. Every run is bounded in time and stops by itself; the lab is
//! torn down when it ends.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mediator_tests::bench::{self, BenchLab, Mode, Params};

/// Measures relay CPU time per forwarded packet, mode by mode, with ratios to each mode's floor.
#[derive(Parser, Debug)]
#[command(after_help = "\
Examples:
  mediator-bench                                   # all modes, 100 kpps, 3 s each, 3 interleaved cycles
  mediator-bench --rate 50000 --seconds 2 --modes xdp-floor,xdp-native
  mediator-bench --json results.json")]
struct Args {
    /// Offered packets per second (one RTP stream, pool side to gateway side).
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds per mode (at most 60).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// RTP payload bytes (160 = 20 ms of G.711).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// Comma-separated: xdp-floor, xdp-native, xdp-generic, bare-relay, userspace.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "xdp-floor,xdp-native,xdp-generic,bare-relay,userspace"
    )]
    modes: Vec<String>,
    /// Cycles through the modes this many times; each mode is judged by its median (1-9).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "mediator-bench needs root (network namespaces, XDP)"
    );
    anyhow::ensure!((1..=60).contains(&args.seconds), "--seconds must be 1-60");
    anyhow::ensure!(
        (1..=2_000_000).contains(&args.rate),
        "--rate must be 1-2000000"
    );
    anyhow::ensure!(
        (12..=1400).contains(&args.payload),
        "--payload must be 12-1400"
    );
    let modes = args
        .modes
        .iter()
        .map(|m| Mode::parse(m).with_context(|| format!("--modes: unknown mode '{m}'")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = Params {
        rate_pps: args.rate,
        duration: Duration::from_secs(args.seconds),
        payload: args.payload,
    };
    let mut lab = BenchLab::new()?;
    let mut runs = Vec::new();
    // Interleaved, so slow drift on the machine touches every mode alike.
    for cycle in 1..=args.repeat {
        for &mode in &modes {
            eprintln!(
                "[{cycle}/{}] {} at {} pps for {} s ...",
                args.repeat,
                mode.name(),
                args.rate,
                args.seconds
            );
            runs.push(bench::run_mode(&mut lab, mode, &params).await?);
        }
    }
    let summaries = bench::summarize(&runs);
    print!("{}", bench::table(&summaries));
    if let Some(path) = args.json {
        std::fs::write(&path, bench::json(&summaries, &params))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
