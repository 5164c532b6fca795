//! Debian's dnsmasq as the lab's DNS server: authoritative for the records a test gives it (A,
//! SRV, NAPTR), nothing else (no upstream, no /etc/hosts), on loopback inside a lab namespace so
//! only that namespace's daemons reach it. Records are changed by starting it again with new
//! ones, as an operator's zone change would appear to a resolver. Killed on drop.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::process::Process;

/// The TTL of every record it serves, in seconds: short, so a test sees a change quickly.
pub const TTL_SECS: u32 = 2;

/// One record, as dnsmasq's options write them.
#[derive(Clone, Debug)]
pub enum Record {
    /// `name` has address `ip`.
    Host { name: String, ip: String },
    /// `service` (`_sip._udp.example`) is offered by `target`:`port`.
    Srv {
        service: String,
        target: String,
        port: u16,
        priority: u16,
        weight: u16,
    },
    /// `service` is not offered (an SRV record whose target is `.`).
    SrvNone { service: String },
    /// `name`'s NAPTR record leading to SRV owner `replacement` for `service` (`SIP+D2U`…).
    Naptr {
        name: String,
        order: u16,
        preference: u16,
        service: String,
        replacement: String,
    },
}

impl Record {
    pub fn host(name: &str, ip: &str) -> Record {
        Record::Host {
            name: name.into(),
            ip: ip.into(),
        }
    }

    /// An SRV record that says the service is not offered (target `.`, RFC 2782).
    pub fn srv_none(service: &str) -> Record {
        Record::SrvNone {
            service: service.into(),
        }
    }

    pub fn srv(service: &str, target: &str, port: u16, priority: u16, weight: u16) -> Record {
        Record::Srv {
            service: service.into(),
            target: target.into(),
            port,
            priority,
            weight,
        }
    }

    pub fn naptr(name: &str, service: &str, replacement: &str) -> Record {
        Self::naptr_ordered(name, 10, service, replacement)
    }

    /// A NAPTR record of order `order` (lower first, RFC 3403).
    pub fn naptr_ordered(name: &str, order: u16, service: &str, replacement: &str) -> Record {
        Record::Naptr {
            name: name.into(),
            order,
            preference: 50,
            service: service.into(),
            replacement: replacement.into(),
        }
    }

    fn option(&self) -> String {
        match self {
            Record::Host { name, ip } => format!("--host-record={name},{ip}"),
            Record::Srv {
                service,
                target,
                port,
                priority,
                weight,
            } => format!("--srv-host={service},{target},{port},{priority},{weight}"),
            Record::SrvNone { service } => format!("--srv-host={service}"),
            Record::Naptr {
                name,
                order,
                preference,
                service,
                replacement,
            } => format!("--naptr-record={name},{order},{preference},S,{service},,{replacement}"),
        }
    }
}

pub struct DnsServer {
    ns: Option<String>,
    port: u16,
    domain: String,
    log: PathBuf,
    proc: Option<Process>,
}

impl DnsServer {
    /// dnsmasq in namespace `ns` (None: here) on 127.0.0.1:`port`, authoritative for `domain`
    /// (other names in it do not exist) and serving `records`.
    pub fn start(
        ns: Option<&str>,
        port: u16,
        domain: &str,
        records: &[Record],
    ) -> anyhow::Result<DnsServer> {
        let log = std::env::temp_dir().join(format!(
            "mediator-dnsmasq-{}-{}-{port}.log",
            std::process::id(),
            ns.unwrap_or("host")
        ));
        let mut d = DnsServer {
            ns: ns.map(str::to_string),
            port,
            domain: domain.into(),
            log,
            proc: None,
        };
        d.set(records)?;
        Ok(d)
    }

    /// Serves `records` instead (dnsmasq started again with them).
    pub fn set(&mut self, records: &[Record]) -> anyhow::Result<()> {
        drop(self.proc.take());
        let mut args: Vec<OsString> = [
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--pid-file=".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={}", self.port),
            format!("--local=/{}/", self.domain),
            format!("--local-ttl={TTL_SECS}"),
            "--log-queries".into(),
            "--log-facility=-".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.extend(records.iter().map(|r| OsString::from(r.option())));
        self.proc = Some(Process::start(
            "dnsmasq",
            PathBuf::from("/usr/sbin/dnsmasq"),
            self.ns.as_deref(),
            args,
            self.log.clone(),
        )?);
        // Listening takes a few milliseconds; a resolver asking earlier retries anyway.
        std::thread::sleep(std::time::Duration::from_millis(300));
        if let Some(p) = self.proc.as_mut()
            && let Some(status) = p.exited()?
        {
            anyhow::bail!("dnsmasq exited ({status}): {}", p.log());
        }
        Ok(())
    }

    /// Its log (the queries it answered).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The address to give mediator-control (`--dns-server`), inside the namespace.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
