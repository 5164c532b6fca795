//! `mediator-callbench`: call setup rate, concurrent calls and the control daemon's memory per
//! call, with SIPp driving calls through Mediator in the namespace lab (caller on the pool side,
//! callee on the gateway side, a dataplane session per call). As root; bounded in count and time;
//! the lab is torn down at the end or on failure.
//!
//!   mediator-callbench [--rate 500] [--calls 5000] [--concurrent 10000] [--hold-secs 40]
//!   mediator-callbench --latency [--rate 100] [--calls 2000] [--writes-per-sec 20]
//!                      [--baseline PATH-TO-ANOTHER-mediator-control] [--rounds 2]
//!
//! `--latency` measures call setup latency at the caller (INVITE → 200, SIPp's response-time
//! trace) at a steady rate, without and with topology writes in a loop (durable writes through
//! the control API, alternately creating and deleting a PSTN usage), for this build and — with
//! `--baseline` — another build of mediator-control, interleaved in one run and on the same lab.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mediator_tests::calls::CallLab;
use mediator_tests::lab::{GW_PEER, POOL_PEER, POOL_RELAY};
use mediator_tests::sipp::{Uas, uac};

#[derive(Parser, Debug, Clone)]
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
    /// Measure call setup latency without and with topology writes instead (see above).
    #[arg(long)]
    latency: bool,
    /// Topology writes per second while calls are placed, all writers together (`--latency`).
    #[arg(long, default_value_t = 20)]
    writes_per_sec: u32,
    /// Concurrent writers sharing those writes, each its own client (`--latency`).
    #[arg(long, default_value_t = 2)]
    writers: u32,
    /// Another mediator-control binary measured side by side with this build (`--latency`).
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
    /// How many times each (build, writes) run is repeated, interleaved (`--latency`).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
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
    if args.latency {
        return latency(&args).await;
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

/// p50 and p99 of `v` (ms), nearest rank.
fn percentiles(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99))
}

/// Each write RPC is bounded: a write that takes longer fails the run.
const WRITE_LIMIT: Duration = Duration::from_secs(5);

/// `writers` clients writing the topology `per_sec` times a second between them until `stop`.
async fn write_loops(
    lab: &CallLab,
    per_sec: u32,
    writers: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u64> {
    let each = (per_sec / writers.max(1)).max(1);
    let mut set = tokio::task::JoinSet::new();
    for k in 0..writers.max(1) {
        let channel = lab.control.channel().await?;
        set.spawn(write_loop(channel, k, each, stop.clone()));
    }
    let mut total = 0;
    while let Some(done) = set.join_next().await {
        total += done??;
    }
    Ok(total)
}

/// Writer `k`: the topology `per_sec` times a second until `stop` — its own PSTN usage created,
/// then deleted (each a durable store transaction). Returns how many writes it made.
async fn write_loop(
    channel: tonic::transport::Channel,
    k: u32,
    per_sec: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u64> {
    use mediator_proto::control::v1 as pb;
    let mut topo = pb::topology_service_client::TopologyServiceClient::new(channel);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec.max(1));
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
        let name = format!("callbench-writes-{k}");
        let write = async {
            if n.is_multiple_of(2) {
                topo.create_pstn_usage(pb::CreatePstnUsageRequest {
                    usage: Some(pb::PstnUsage {
                        name,
                        priority: 1000,
                        ..Default::default()
                    }),
                })
                .await
                .map(drop)
                .context("creating a PSTN usage")
            } else {
                topo.delete_pstn_usage(pb::DeleteRequest {
                    name,
                    expected_revision: 0,
                })
                .await
                .map(drop)
                .context("deleting a PSTN usage")
            }
        };
        tokio::time::timeout(WRITE_LIMIT, write)
            .await
            .context("a topology write took over 5 s")??;
        n += 1;
    }
    Ok(n)
}

/// One latency run: `calls` calls at `rate`, with or without the write loop; the setup times.
async fn latency_run(args: &Args, lab: &CallLab, writes: bool) -> anyhow::Result<(Vec<f64>, u64)> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pool_ns = lab.lab.pool.name.clone();
    let target = format!("{POOL_RELAY}:5060");
    let (calls, rate) = (args.calls, args.rate);
    let limit = Duration::from_secs(u64::from(calls / rate.max(1)) + 60);
    let caller = tokio::task::spawn_blocking(move || {
        uac(
            &pool_ns,
            POOL_PEER,
            &target,
            calls,
            rate,
            limit,
            &[
                "-s",
                "+14255550100",
                "-sn",
                "uac",
                "-d",
                "0",
                "-l",
                "15000",
                "-trace_rtt",
                "-rtt_freq",
                "1",
            ],
        )
    });
    let written = if writes {
        let w = write_loops(lab, args.writes_per_sec, args.writers, stop.clone());
        tokio::pin!(w);
        let mut caller = caller;
        tokio::select! {
            r = &mut w => { r?; bail!("the write loop ended early"); }
            run = &mut caller => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let n = w.await?;
                return finish(run??, calls, n);
            }
        }
    } else {
        0
    };
    finish(caller.await??, calls, written)
}

fn finish(
    run: mediator_tests::sipp::UacRun,
    calls: u32,
    written: u64,
) -> anyhow::Result<(Vec<f64>, u64)> {
    if run.successful != u64::from(calls) || run.rtt_ms.len() != calls as usize {
        bail!(
            "{} of {calls} calls completed, {} setup times traced: {}",
            run.successful,
            run.rtt_ms.len(),
            run.errors.lines().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    Ok((run.rtt_ms, written))
}

/// `--latency`: setup latency without and with topology writes, per build, side by side.
async fn latency(args: &Args) -> anyhow::Result<()> {
    let mut builds: Vec<(&str, Option<&std::path::Path>)> = vec![("this build", None)];
    if let Some(b) = &args.baseline {
        builds.insert(0, ("baseline", Some(b.as_path())));
    }
    // Every (build, writes) set of samples, pooled over the rounds.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); builds.len() * 2];
    let mut written = vec![0u64; builds.len()];
    for round in 0..args.rounds.max(1) {
        // Alternate the order of the builds, and of the runs without and with writes, by round:
        // neither side always runs first.
        let mut order: Vec<usize> = (0..builds.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for b in order {
            let (name, binary) = builds[b];
            let lab = CallLab::build_using(&format!("cl{b}"), &["30000-39999"], &[], binary)
                .await
                .with_context(|| format!("the lab with {name}"))?;
            let _uas = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).context("uas")?;
            // A short warm-up, then without writes and with them.
            latency_run(
                &Args {
                    calls: args.rate,
                    ..args.clone()
                },
                &lab,
                false,
            )
            .await?;
            let runs = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for writes in runs {
                let (rtt, n) = latency_run(args, &lab, writes)
                    .await
                    .with_context(|| format!("{name}, writes {writes}, round {round}"))?;
                let mut sorted = rtt.clone();
                let (p50, p99) = percentiles(&mut sorted);
                println!(
                    "  round {round} {name:<10} writes {:<5}: p50 {p50:.0} ms, p99 {p99:.0} ms, \
                     max {:.0} ms, {} of {} over 50 ms ({n} writes)",
                    writes,
                    sorted.last().copied().unwrap_or(f64::NAN),
                    sorted.iter().filter(|&&v| v > 50.0).count(),
                    sorted.len()
                );
                samples[b * 2 + usize::from(writes)].extend(rtt);
                written[b] += n;
            }
        }
    }
    println!(
        "call setup latency at the caller (INVITE -> 200), {} calls at {}/s per run, {} round(s) \
         (order alternated); writes: {}/s from {} concurrent clients (PSTN usages created and \
         deleted through the API)",
        args.calls, args.rate, args.rounds, args.writes_per_sec, args.writers
    );
    println!(
        "{:<12} {:>10} {:>10} {:>14} {:>14} {:>12}",
        "build", "p50 ms", "p99 ms", "p50 writes ms", "p99 writes ms", "p99 ratio"
    );
    for (b, (name, _)) in builds.iter().enumerate() {
        let (p50, p99) = percentiles(&mut samples[b * 2]);
        let (w50, w99) = percentiles(&mut samples[b * 2 + 1]);
        println!(
            "{name:<12} {p50:>10.2} {p99:>10.2} {w50:>14.2} {w99:>14.2} {:>11.2}x",
            w99 / p99
        );
        println!("             ({} writes made during its runs)", written[b]);
    }
    Ok(())
}
