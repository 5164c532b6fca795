//! One process fixture for both daemons: a binary started (optionally inside a lab namespace, with
//! `nsenter` so it keeps the host's bpffs), its output in a log file, killed, terminated or
//! restarted at will, and on drop killed — with its log printed when a test is panicking.
//! `daemon::Daemon` (mediator-dataplane) and `control::Control` (mediator-control) add their own
//! directories and clients on top.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context;

/// The daemons' log filter (`MEDIATOR_LOG`) for this test binary: `info` unless a test that
/// must see everything (the key-leak check) asks for more before it starts any daemon.
static LOG_FILTER: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the daemons' log filter for this test binary (once; later calls change nothing).
pub fn set_log_filter(filter: &'static str) {
    let _ = LOG_FILTER.set(filter);
}

pub struct Process {
    /// The daemon's name, for messages.
    pub name: &'static str,
    binary: PathBuf,
    ns: Option<String>,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `binary` with `args` in namespace `ns` (None: here), appending its output to `log`.
    pub fn start(
        name: &'static str,
        binary: PathBuf,
        ns: Option<&str>,
        args: Vec<OsString>,
        log: PathBuf,
    ) -> anyhow::Result<Process> {
        let mut p = Process {
            name,
            binary,
            ns: ns.map(str::to_string),
            args,
            log,
            child: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.args(&self.args)
            .env("MEDIATOR_LOG", LOG_FILTER.get().copied().unwrap_or("info"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("spawning {}", self.binary.display()))?,
        );
        Ok(())
    }

    /// `Some(status)` once the process has exited by itself.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// The daemon's process id (nsenter execs it, so this is the daemon itself).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.signal_term();
        self.child.take()?.wait().ok()
    }

    /// SIGTERM without waiting (see [`Self::exited`]).
    pub fn signal_term(&self) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Killed (as in a crash) and started again with the same arguments.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
