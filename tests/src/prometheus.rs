//! Debian's Prometheus as the lab's scraper: started inside a lab namespace with a scrape
//! configuration of its own (the daemons' `/metrics` addresses, every second), its storage in a
//! temporary directory, its HTTP API on loopback there; queried with instant queries. Killed
//! (and its storage removed) on drop.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::lab::in_netns;
use crate::process::Process;

pub struct Prometheus {
    ns: String,
    web: String,
    dir: PathBuf,
    proc: Option<Process>,
}

impl Prometheus {
    /// Prometheus in namespace `ns`, scraping each of `targets` (host:port) every second, its
    /// API on loopback port `port`.
    pub fn start(ns: &str, targets: &[&str], port: u16) -> anyhow::Result<Prometheus> {
        let dir =
            std::env::temp_dir().join(format!("mediator-prometheus-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mediator\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config)?;
        let web = format!("127.0.0.1:{port}");
        let args: Vec<OsString> = vec![
            format!("--config.file={}", file.display()).into(),
            format!("--storage.tsdb.path={}", dir.join("data").display()).into(),
            format!("--web.listen-address={web}").into(),
        ];
        let proc = Process::start(
            "prometheus",
            PathBuf::from("/usr/bin/prometheus"),
            Some(ns),
            args,
            dir.join("prometheus.log"),
        )?;
        Ok(Prometheus {
            ns: ns.into(),
            web,
            dir,
            proc: Some(proc),
        })
    }

    /// The value of instant query `expr` when it has exactly one sample (None otherwise, or
    /// while the API is not up).
    pub fn value(&self, expr: &str) -> Option<f64> {
        let body = self.get(&format!("/api/v1/query?query={}", encode(expr)))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = json.get("data")?.get("result")?.as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0].get("value")?.get(1)?.as_str()?.parse().ok()
    }

    /// Waits (at most `limit`) until `expr` has one sample that `ok` accepts; returns the last
    /// value seen.
    pub fn wait(&self, expr: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> Option<f64> {
        let start = std::time::Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            last = self.value(expr);
            if last.is_some_and(&ok) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        last
    }

    fn get(&self, path: &str) -> Option<String> {
        http_get(&self.ns, &self.web, path)
    }

    /// The log of the Prometheus process.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // The process goes first (killed by its fixture), then its storage.
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One scrape of `addr`'s `/metrics` from inside namespace `ns`: the body (None on failure).
pub fn scrape(ns: &str, addr: &str) -> Option<String> {
    http_get(ns, addr, "/metrics")
}

/// The body of `GET path` (HTTP/1.0) to `addr` from inside namespace `ns` (None on failure).
fn http_get(ns: &str, addr: &str, path: &str) -> Option<String> {
    let (addr, path) = (addr.to_string(), path.to_string());
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    })
}
