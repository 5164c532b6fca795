//! `mediator-callbench`: call setup rate, concurrent calls and the control daemon's memory per
//! call, with SIPp driving calls through Mediator in the namespace lab (caller on the pool side,
//! callee on the gateway side, a dataplane session per call). As root; bounded in count and time;
//! the lab is torn down at the end or on failure.
//!
//!   mediator-callbench [--rate 500] [--calls 5000] [--concurrent 10000] [--hold-secs 40]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mediator_tests::calls::CallLab;
use mediator_tests::lab::{GW_PEER, POOL_PEER, POOL_RELAY};
use mediator_tests::sipp::{Uas, uac};

#[derive(Parser, Debug)]
#[command(about = "Call setup rate, concurrent calls and memory per call through Mediator")]
struct Args {
    /// Calls per second offered in the rate run.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Calls placed in the rate run (each set up, answered and hung up at once).
    #[arg(long, default_value_t = 5000)]
    calls: u32,
    /// Calls held at once in the concurrency run (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    concurrent: u32,
    /// How long each call of the concurrency run is held.
    #[arg(long, default_value_t = 40)]
    hold_secs: u64,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("mediator-callbench needs root (network namespaces, XDP)");
    }
    // A dataplane holds four sockets per call, and this machine caps a process at 20000 open
    // files (and forbids raising it): three relays in the pool, round-robin, hold 10000 calls.
    let lab = CallLab::with_relays("cb", &["10000-26999", "27000-43999", "44000-60999"]).await?;
    let pid = lab.control.pid().context("control pid")?;
    let _uas = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).context("uas")?;
    let target = format!("{POOL_RELAY}:5060");

    // 1. Setup rate: `calls` calls at `rate`/s, each answered and hung up at once.
    let idle_rss = rss_kib(pid)?;
    let ticks0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let limit = Duration::from_secs(u64::from(args.calls / args.rate.max(1)) + 60);
    let run = uac(
        &lab.lab.pool.name,
        POOL_PEER,
        &target,
        args.calls,
        args.rate,
        limit,
        &["-s", "+14255550100", "-sn", "uac", "-d", "0", "-l", "15000"],
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid)? - ticks0;
    let cps = run.successful as f64 / secs;
    println!(
        "setup rate: {} calls offered at {}/s: {} successful, {} failed in {:.1} s = {:.0} calls/s; \
         mediator-control CPU {:.2} ms per call",
        args.calls,
        args.rate,
        run.successful,
        run.failed,
        secs,
        cps,
        ticks as f64 * 10.0 / run.successful.max(1) as f64
    );
    if !run.errors.is_empty() {
        println!(
            "sipp errors (first lines):\n{}",
            run.errors.lines().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    lab.wait_recent(1).await?;

    // 2. Concurrency: `concurrent` calls held `hold_secs`, memory at the peak.
    if args.concurrent > 0 {
        let hold_ms = (args.hold_secs * 1000).to_string();
        let n = args.concurrent;
        let rate = args.rate;
        let pool_ns = lab.lab.pool.name.clone();
        let target2 = target.clone();
        let limit = Duration::from_secs(u64::from(n / rate.max(1)) + args.hold_secs + 90);
        let caller = std::thread::spawn(move || {
            uac(
                &pool_ns,
                POOL_PEER,
                &target2,
                n,
                rate,
                limit,
                &[
                    "-s",
                    "+14255550100",
                    "-sn",
                    "uac",
                    "-d",
                    &hold_ms,
                    "-l",
                    "15000",
                ],
            )
        });
        let mut peak = 0usize;
        let mut peak_rss = idle_rss;
        let deadline = Instant::now() + limit;
        while !caller.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let active = lab.active().await.map(|v| v.len()).unwrap_or(0);
            if active >= peak {
                peak = active;
                peak_rss = rss_kib(pid)?;
            }
        }
        let run = caller.join().map_err(|_| anyhow::anyhow!("uac thread"))??;
        println!(
            "concurrency: {} calls held {} s: {} successful, {} failed; peak {} calls in progress; \
             mediator-control RSS {} KiB idle, {} KiB at the peak = {:.1} KiB per call",
            n,
            args.hold_secs,
            run.successful,
            run.failed,
            peak,
            idle_rss,
            peak_rss,
            (peak_rss.saturating_sub(idle_rss)) as f64 / peak.max(1) as f64
        );
    }
    Ok(())
}
