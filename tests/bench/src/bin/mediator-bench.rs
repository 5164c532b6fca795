//! `mediator-bench`: how many packets a relay forwards, at what loss, latency and CPU per packet,
//! for the XDP path, the userspace relay and their floors (a trivial XDP redirect program, a bare
//! recvmmsg/sendmmsg relay), and rtpengine when it is installed, side by side in one run in the
//! namespace lab. Needs root. Every run is bounded in time and stops by itself; the lab is torn
//! down when it ends, fails or is interrupted (Ctrl-C).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mediator_bench::report::{self, Plan};
use mediator_bench::traffic::{Codec, Generator, Load, Media, Peers};
use mediator_bench::{self as bench, BenchLab, Mode, Outcome, rtpengine};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sweep {
    /// Offered rate, stepped up by half until loss passes the threshold, then bisected.
    Rate,
    /// Session counts (--sweep-sessions) at one rate.
    Sessions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GeneratorArg {
    /// UDP sockets with batched sendmmsg (up to ~450 kpps on one core here).
    Socket,
    /// Live frames from an XDP program run with BPF_PROG_RUN, for rates a socket cannot reach.
    Inject,
}

/// Measures relays mode by mode in the namespace lab: offered and forwarded packets/s, loss,
/// one-way latency p50/p99/p99.9, added jitter and relay CPU per forwarded packet, with each
/// mode's ratio to its floor.
#[derive(Parser, Debug)]
#[command(after_help = "\
Examples:
  mediator-bench                                        # every mode, 1000 sessions of G.711/20 ms (100 kpps)
  mediator-bench --sessions 100 --rate 200000 --generator inject
  mediator-bench --sweep rate --modes xdp-native,userspace --seconds 2
  mediator-bench --sweep sessions --sweep-sessions 10,100,1000,4000 --rate 100000
  mediator-bench --via-sip --modes xdp-native,userspace --sessions 500
  mediator-bench --json out.json --svg out.svg")]
struct Args {
    /// Comma-separated: xdp-floor, xdp-native, xdp-generic, bare-relay, userspace, rtpengine
    /// [default: all; rtpengine only when installed].
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    /// Sessions (calls), each one RTP stream each way.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Offered packets/s, both directions together [default: the sessions' real-time rate].
    #[arg(long)]
    rate: Option<u64>,
    /// Codec: pcmu, pcma, g722, opus.
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Packet time, ms (10-120).
    #[arg(long, default_value_t = 20)]
    ptime: u32,
    /// RTP payload bytes [default: the codec's size for the ptime].
    #[arg(long)]
    payload: Option<usize>,
    #[arg(long, value_enum, default_value = "socket")]
    generator: GeneratorArg,
    /// Packets sent back to back once due (1-64), as a NIC with interrupt moderation delivers.
    #[arg(long, default_value_t = 64)]
    burst: u32,
    /// Seconds per run (1-60).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Runs per mode, interleaved, each setting judged by its median (1-9).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    #[arg(long, value_enum)]
    sweep: Option<Sweep>,
    /// Session counts for --sweep sessions.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,4000")]
    sweep_sessions: Vec<usize>,
    /// Highest rate --sweep rate tries, packets/s.
    #[arg(long, default_value_t = 2_000_000)]
    max_rate: u64,
    /// Loss above this fraction counts as loss (0.0001 = 0.01 %).
    #[arg(long, default_value_t = 0.0001)]
    loss_threshold: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write the chart as SVG here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// Set the sessions up as SIP calls through mediator-control (SIPp on both sides, ended
    /// with EndCall afterwards) instead of through the dataplane's gRPC API; applies to the modes
    /// that run mediator-dataplane (xdp-native, xdp-generic, userspace).
    #[arg(long)]
    via_sip: bool,
    /// No progress bar (for logs).
    #[arg(long)]
    quiet: bool,
}

struct Run<'a> {
    args: &'a Args,
    media: Media,
    generator: Generator,
    bar: ProgressBar,
    notes: Vec<String>,
    /// (mode, sessions) whose set-up is in the notes already.
    set_up_noted: std::collections::HashSet<(Mode, usize)>,
}

impl Run<'_> {
    /// Sets `mode` up with `sessions` and measures it at each rate `rates` yields (which sees
    /// the runs so far and returns None to stop).
    async fn mode_runs(
        &mut self,
        lab: &mut BenchLab,
        peers: &Peers,
        mode: Mode,
        sessions: usize,
        mut rates: impl FnMut(&[Outcome]) -> Option<u64>,
    ) -> anyhow::Result<Vec<Outcome>> {
        self.bar
            .set_message(format!("{}: setting up {sessions} sessions", mode.name()));
        let relay = bench::setup(
            lab,
            mode,
            sessions,
            self.args.via_sip.then_some(&self.media),
        )
        .await?;
        // Once per mode and session count, however many runs it has.
        if let Some(n) = relay.setup_note()
            && self.set_up_noted.insert((mode, sessions))
        {
            self.notes.push(n);
        }
        let mut injectors = match self.generator {
            Generator::Inject => Some(lab.injectors(&relay.streams, &self.media)?),
            Generator::Socket => None,
        };
        let mut out: Vec<Outcome> = Vec::new();
        while let Some(rate) = rates(&out) {
            self.bar
                .set_message(format!("{} {sessions} sessions {rate} pps", mode.name()));
            let load = Load {
                rate,
                duration: Duration::from_secs(self.args.seconds),
                media: self.media,
                generator: self.generator,
                burst: self.args.burst,
            };
            let bar = self.bar.clone();
            let base = bar.position();
            if bar.length().is_some_and(|l| l < base + 100) {
                bar.set_length(base + 100);
            }
            let progress =
                move |f: f64| bar.set_position(base + (f.clamp(0.0, 1.0) * 100.0) as u64);
            let o = tokio::task::block_in_place(|| {
                bench::measure(
                    lab,
                    &relay,
                    peers,
                    load,
                    injectors.as_mut(),
                    self.args.loss_threshold,
                    &progress,
                )
            })?;
            self.bar.set_position(base + 100);
            if o.muted.is_some_and(|m| m > 0) {
                self.notes.push(format!(
                    "{} at {rate} pps: {} streams stayed muted after overload",
                    mode.name(),
                    o.muted.unwrap_or(0)
                ));
            }
            out.push(o);
        }
        relay.finish().await?;
        Ok(out)
    }
}

fn natural_rate(sessions: usize, media: &Media) -> u64 {
    (sessions as f64 * 2.0 * media.stream_pps()).round() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let result = run_bench(Args::parse()).await;
    if bench::stop_requested() {
        // Everything the run made (namespaces, daemons, programs, pins) was dropped on the way out.
        eprintln!("interrupted: the lab is torn down");
        std::process::exit(130);
    }
    result
}

async fn run_bench(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "mediator-bench needs root (network namespaces, XDP)"
    );
    anyhow::ensure!((1..=60).contains(&args.seconds), "--seconds must be 1-60");
    anyhow::ensure!((1..=9).contains(&args.repeat), "--repeat must be 1-9");
    anyhow::ensure!((10..=120).contains(&args.ptime), "--ptime must be 10-120");
    anyhow::ensure!((1..=64).contains(&args.burst), "--burst must be 1-64");
    anyhow::ensure!(
        (0.0..0.5).contains(&args.loss_threshold),
        "--loss-threshold must be at least 0 and under 0.5"
    );
    let codec = Codec::parse(&args.codec).with_context(|| {
        format!(
            "--codec: '{}' is not one of pcmu, pcma, g722, opus",
            args.codec
        )
    })?;
    let media = Media::new(codec, args.ptime, args.payload);
    anyhow::ensure!(
        (mediator_bench::probe::PROBE_LEN..=1400).contains(&media.payload),
        "--payload: {} bytes; it must be {}-1400 (the probe takes {})",
        media.payload,
        mediator_bench::probe::PROBE_LEN,
        mediator_bench::probe::PROBE_LEN
    );
    if let Some(r) = args.rate {
        anyhow::ensure!((1..=5_000_000).contains(&r), "--rate must be 1-5000000");
    }
    anyhow::ensure!(args.sessions >= 1, "--sessions must be at least 1");
    let mut notes = Vec::new();
    let modes: Vec<Mode> = if args.modes.is_empty() {
        let mut m = Mode::ALL.to_vec();
        if rtpengine::binary().is_none() {
            m.retain(|m| !m.runs_rtpengine());
            notes.push("rtpengine is not installed: its modes were left out".to_string());
        }
        m
    } else {
        args.modes
            .iter()
            .map(|m| {
                Mode::parse(m).with_context(|| {
                    format!("--modes: unknown mode '{m}' (xdp-floor, xdp-native, xdp-generic, bare-relay, userspace, rtpengine, userspace-srtp, rtpengine-srtp, xdp-passthrough)")
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    if modes.iter().any(|m| m.runs_rtpengine()) && rtpengine::binary().is_none() {
        bail!(
            "--modes rtpengine: rtpengine is not installed (apt-get install -y --no-install-recommends rtpengine-daemon)"
        );
    }
    let mut modes = modes;
    let no_srtp = if args.via_sip {
        Some("--via-sip")
    } else if matches!(args.generator, GeneratorArg::Inject) {
        Some("--generator inject")
    } else {
        None
    };
    if let Some(why) = no_srtp
        && modes.iter().any(|m| m.srtp())
    {
        anyhow::ensure!(
            args.modes.is_empty(),
            "{why} does not run the SRTP modes (userspace-srtp, rtpengine-srtp, xdp-passthrough): \
             their peers protect packets in userspace, over sockets"
        );
        modes.retain(|m| !m.srtp());
        notes.push(format!("{why}: the SRTP modes were left out"));
    }
    if args.via_sip {
        let direct: Vec<&str> = modes
            .iter()
            .filter(|m| !m.runs_dataplane())
            .map(|m| m.name())
            .collect();
        anyhow::ensure!(
            direct.len() < modes.len(),
            "--via-sip: none of the modes runs mediator-dataplane (xdp-native, xdp-generic, userspace)"
        );
        if !direct.is_empty() {
            notes.push(format!(
                "--via-sip applies to the modes that run mediator-dataplane; {} were set up as usual",
                direct.join(", ")
            ));
        }
    }
    let plan = match args.sweep {
        None => Plan::Compare,
        Some(Sweep::Rate) => Plan::Rate,
        Some(Sweep::Sessions) => Plan::Sessions,
    };
    // Session counts each mode can hold here.
    let session_counts: Vec<usize> = match plan {
        Plan::Sessions => {
            anyhow::ensure!(
                args.sweep_sessions.iter().all(|n| *n >= 1),
                "--sweep-sessions: every count must be at least 1"
            );
            args.sweep_sessions.clone()
        }
        _ => vec![args.sessions],
    };
    for &m in &modes {
        let (room, why) = bench::session_room(m);
        for &n in &session_counts {
            if n > room {
                let msg = format!(
                    "{}: {n} sessions left out: at most {room} fit here ({why})",
                    m.name()
                );
                if plan != Plan::Sessions {
                    bail!(msg);
                }
                notes.push(msg);
            }
        }
    }
    tokio::spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("\ninterrupted: stopping the run and tearing the lab down");
        bench::request_stop();
    });

    let generator = match args.generator {
        GeneratorArg::Socket => Generator::Socket,
        GeneratorArg::Inject => Generator::Inject,
    };
    let planned: u64 = match plan {
        Plan::Compare => modes.len() as u64 * u64::from(args.repeat),
        Plan::Rate => modes.len() as u64 * 8,
        Plan::Sessions => modes.len() as u64 * session_counts.len() as u64,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(planned * 100)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    let mut lab = BenchLab::new()?;
    let peers = Peers::new(&lab.lab.pool.name, &lab.lab.gw.name)?;
    let mut run = Run {
        args: &args,
        media,
        generator,
        bar: bar.clone(),
        notes,
        set_up_noted: Default::default(),
    };
    let mut runs: Vec<Outcome> = Vec::new();
    let threshold = args.loss_threshold;
    match plan {
        Plan::Compare => {
            let rate = args.rate.unwrap_or(natural_rate(args.sessions, &media));
            // Interleaved, so slow drift on the machine touches every mode alike.
            for _ in 0..args.repeat {
                for &mode in &modes {
                    let mut once = Some(rate);
                    runs.extend(
                        run.mode_runs(&mut lab, &peers, mode, args.sessions, |_| once.take())
                            .await?,
                    );
                }
            }
        }
        Plan::Rate => {
            let start = args
                .rate
                .unwrap_or(natural_rate(args.sessions, &media))
                .min(args.max_rate);
            for &mode in &modes {
                let max_rate = args.max_rate;
                let mut bounds: (Option<u64>, Option<u64>) = (None, None);
                let mut bisections = 0;
                let mut generator_bound = false;
                let next = |done: &[Outcome]| -> Option<u64> {
                    let Some(last) = done.last() else {
                        return Some(start);
                    };
                    let good = last.loss() <= threshold;
                    if good && last.offered_pps() < 0.9 * last.rate as f64 {
                        generator_bound = true;
                        return None; // the generator, not the relay, is the limit
                    }
                    if good {
                        bounds.0 = Some(last.rate);
                    } else {
                        bounds.1 = Some(last.rate);
                    }
                    match bounds {
                        (Some(g), None) if g < max_rate => Some((g * 3 / 2).min(max_rate)),
                        (Some(_), None) => None,
                        (g, Some(b)) if bisections < 2 => {
                            let g = g.unwrap_or(0);
                            bisections += 1;
                            let mid = (g + b) / 2;
                            (mid > g && mid < b).then_some(mid)
                        }
                        _ => None,
                    }
                };
                let r = run
                    .mode_runs(&mut lab, &peers, mode, args.sessions, next)
                    .await?;
                if generator_bound {
                    run.notes.push(format!(
                        "{}: the {} generator could not offer more than {:.0} packets/s; the relay's limit is above that",
                        mode.name(),
                        generator.name(),
                        r.last().map_or(0.0, Outcome::offered_pps)
                    ));
                }
                runs.extend(r);
            }
        }
        Plan::Sessions => {
            for &n in &session_counts {
                for &mode in &modes {
                    if n > bench::session_room(mode).0 {
                        continue;
                    }
                    let rate = args.rate.unwrap_or(natural_rate(n, &media));
                    let mut once = Some(rate);
                    runs.extend(
                        run.mode_runs(&mut lab, &peers, mode, n, |_| once.take())
                            .await?,
                    );
                }
            }
        }
    }
    bar.finish_and_clear();
    let notes = run.notes;
    print!("{}", report::table(plan, &runs, threshold));
    for n in &notes {
        println!("note: {n}");
    }
    let settings = serde_json::json!({
        "modes": modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "sessions": session_counts,
        "rate_pps": args.rate,
        "codec": media.codec.name,
        "ptime_ms": media.ptime_ms,
        "payload_bytes": media.payload,
        "generator": generator.name(),
        "via_sip": args.via_sip,
        "burst": args.burst,
        "seconds": args.seconds,
        "repeat": if plan == Plan::Compare { args.repeat } else { 1 },
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    });
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            report::json(plan, settings.clone(), &runs, threshold, &notes),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let caption = format!(
            "mediator-bench{}{} | {} {} ms, {} B payload, {} generator, {} s per run",
            match plan {
                Plan::Compare => String::new(),
                _ => format!(" --sweep {}", plan.name()),
            },
            if args.via_sip {
                " --via-sip (sessions as SIP calls)"
            } else {
                ""
            },
            media.codec.name,
            media.ptime_ms,
            media.payload,
            generator.name(),
            args.seconds
        );
        std::fs::write(path, report::svg(plan, &runs, &caption))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
