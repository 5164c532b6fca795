//! SIPp (Debian's sip-tester) as a lab peer: a UAS left running in a namespace, and UAC runs that
//! place a bounded number of calls and must end by themselves. Killed on drop, so a failing test
//! leaves no SIPp behind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The captures SIPp ships (G.711 audio, RFC 2833 DTMF), for RTP in calls.
pub const PCAP_DIR: &str = "/usr/share/sip-tester";

fn sipp(ns: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg("sipp");
    c
}

/// A working directory of its own for every SIPp run (tests run in parallel in one process).
fn workdir(tag: &str) -> anyhow::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mediator-sipp-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A SIPp process in its own working directory: killed and its directory removed on drop.
struct Proc {
    child: Option<Child>,
    dir: PathBuf,
}

impl Proc {
    /// Starts `sipp` in `ns` with `args`, in `dir`, its output discarded (it logs to files).
    fn spawn(ns: &str, dir: PathBuf, args: &[&str]) -> anyhow::Result<Proc> {
        let child = sipp(ns)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting sipp (is sip-tester installed? .ci/setup installs it)")?;
        Ok(Proc {
            child: Some(child),
            dir,
        })
    }

    /// The text of SIPp's log files whose names end in `suffix` (`_messages.log`, `_errors.log`).
    fn logs(&self, suffix: &str) -> String {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Not -bg: SIPp stays our child (nsenter execs it), so this kills exactly it.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A SIPp server left running (killed on drop).
pub struct Uas {
    proc: Proc,
}

impl Uas {
    /// Starts `sipp -sn uas` (or the scenario in `args`) bound to `ip:port` in `ns`, echoing RTP.
    pub fn start(ns: &str, ip: &str, port: u16, args: &[&str]) -> anyhow::Result<Uas> {
        let dir = workdir(&format!("uas{port}"))?;
        let port = port.to_string();
        let mut all = vec![
            "-i",
            ip,
            "-p",
            &port,
            "-rtp_echo",
            "-mi",
            ip,
            "-trace_err",
            "-trace_msg",
            "-nostdin",
        ];
        all.extend_from_slice(if args.is_empty() {
            &["-sn", "uas"][..]
        } else {
            args
        });
        let proc = Proc::spawn(ns, dir, &all)?;
        // Give the server a moment to bind before callers arrive.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Uas { proc })
    }

    /// Every message the server sent and received so far (SIPp's -trace_msg log).
    pub fn messages(&self) -> String {
        self.proc.logs("_messages.log")
    }
}

/// What a UAC run did.
#[derive(Debug)]
pub struct UacRun {
    pub exit_code: i32,
    pub successful: u64,
    pub failed: u64,
    pub errors: String,
    /// Response times (ms) SIPp traced with `-trace_rtt` (the scenario's `rtd` marks: for the
    /// built-in uac, INVITE to 200), empty without it.
    pub rtt_ms: Vec<f64>,
}

/// Places `calls` calls from `ip` in `ns` to `target`, at `rate` per second, and waits for SIPp
/// to finish (at most `limit`). Extra arguments pick the scenario (default: `-sn uac_pcap`, RTP
/// from SIPp's G.711 capture).
pub fn uac(
    ns: &str,
    ip: &str,
    target: &str,
    calls: u32,
    rate: u32,
    limit: Duration,
    args: &[&str],
) -> anyhow::Result<UacRun> {
    Uac::start(ns, ip, target, calls, rate, limit, args)?.wait()
}

/// A SIPp client placing a bounded number of calls (killed on drop if still running).
pub struct Uac {
    proc: Proc,
    limit: Duration,
    started: Instant,
}

impl Uac {
    /// Starts SIPp as [`uac`] does, without waiting for it; it gives up by itself after `limit`.
    pub fn start(
        ns: &str,
        ip: &str,
        target: &str,
        calls: u32,
        rate: u32,
        limit: Duration,
        args: &[&str],
    ) -> anyhow::Result<Uac> {
        let rate = rate.to_string();
        let mut all = vec!["-r", &rate];
        all.extend_from_slice(if args.is_empty() {
            &["-sn", "uac_pcap"][..]
        } else {
            args
        });
        all.push(target);
        Self::spawn(ns, ip, calls, limit, &all)
    }

    /// A SIPp server on `ip:port` that handles `calls` calls (scenario in `args`) and then
    /// exits, with the same figures as a client's.
    pub fn serve(
        ns: &str,
        ip: &str,
        port: u16,
        calls: u32,
        limit: Duration,
        args: &[&str],
    ) -> anyhow::Result<Uac> {
        let port = port.to_string();
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        Self::spawn(ns, ip, calls, limit, &all)
    }

    fn spawn(
        ns: &str,
        ip: &str,
        calls: u32,
        limit: Duration,
        args: &[&str],
    ) -> anyhow::Result<Uac> {
        let dir = workdir("uac")?;
        // The built-in uac_pcap scenario plays pcap/g711a.pcap and DTMF captures from its working
        // directory: point pcap/ at the ones SIPp ships.
        let link = dir.join("pcap");
        if !link.exists() {
            std::os::unix::fs::symlink(PCAP_DIR, &link)
                .with_context(|| format!("linking {PCAP_DIR}"))?;
        }
        let (calls, timeout) = (calls.to_string(), format!("{}s", limit.as_secs().max(1)));
        let mut all = vec![
            "-i",
            ip,
            "-mi",
            ip,
            "-m",
            &calls,
            "-trace_stat",
            "-stf",
            "stats.csv",
            "-trace_err",
            "-nostdin",
            "-timeout",
            &timeout,
        ];
        all.extend_from_slice(args);
        Ok(Uac {
            proc: Proc::spawn(ns, dir, &all)?,
            limit,
            started: Instant::now(),
        })
    }

    /// Whether SIPp is still running.
    pub fn running(&mut self) -> bool {
        self.proc
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for SIPp to finish (at most its limit and 5 s) and reads its figures.
    pub fn wait(self) -> anyhow::Result<UacRun> {
        let deadline = self.started + self.limit + Duration::from_secs(5);
        self.wait_until(deadline)
    }

    /// Waits at most until `deadline` for SIPp to finish and reads its figures.
    pub fn wait_until(mut self, deadline: Instant) -> anyhow::Result<UacRun> {
        let Some(mut child) = self.proc.child.take() else {
            bail!("sipp was already waited for");
        };
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "sipp did not finish in time{}",
                    match self.errors() {
                        e if e.is_empty() => String::new(),
                        e => format!(":\n{e}"),
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(self.figures(status))
    }

    fn figures(&self, status: std::process::ExitStatus) -> UacRun {
        let csv = std::fs::read_to_string(self.proc.dir.join("stats.csv")).unwrap_or_default();
        let column = |name: &str| -> u64 {
            let mut lines = csv.lines();
            let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
            let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| last.get(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        UacRun {
            exit_code: status.code().unwrap_or(-1),
            successful: column("SuccessfulCall(C)"),
            failed: column("FailedCall(C)"),
            errors: self.errors(),
            rtt_ms: self
                .proc
                .logs("_rtt.csv")
                .lines()
                .filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok())
                .collect(),
        }
    }

    /// SIPp's error log so far (-trace_err).
    pub fn errors(&self) -> String {
        self.proc.logs("_errors.log")
    }
}
