//! How results reach the terminal: aligned tables for people, pretty JSON (shaped like the topology
//! document) for scripts, and stdout writes that survive a closed pipe (`| head`).

use std::io::Write;

use clap::ValueEnum;
use mediator_proto::control::v1 as pb;
use mediator_topology::model::FieldError;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::Failure;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// Pretty JSON shaped like the topology document, with each resource's revision.
    Json,
}

/// Column-aligned text. Without a header it is a field/value listing (`show`).
#[derive(Debug, Default)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: Some(header.iter().map(|h| h.to_string()).collect()),
            rows: Vec::new(),
        }
    }

    /// A two-column field/value listing.
    pub fn fields() -> Self {
        Table::default()
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn render(&self) -> String {
        let lines: Vec<Vec<String>> = self
            .header
            .iter()
            .chain(self.rows.iter())
            .map(|r| r.iter().map(|c| clean(c)).collect())
            .collect();
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in &lines {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Names, descriptions and patterns come from other people; a newline or escape sequence in one
/// must not break the columns or the terminal.
fn clean(cell: &str) -> String {
    if cell.chars().any(char::is_control) {
        cell.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        cell.to_string()
    }
}

/// Writes to stdout. A reader that went away (`| head`) ends the command quietly.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::ClosedOutput),
        Err(e) => Err(Failure::Output(e.to_string())),
    }
}

pub fn emit_line(text: &str) -> Result<(), Failure> {
    emit(&format!("{text}\n"))
}

pub fn print_json(v: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure::Output(e.to_string()))?;
    emit_line(&text)
}

/// A resource as mediatorctl shows it.
pub trait Show {
    const PLURAL: &'static str;
    const COLUMNS: &'static [&'static str];
    fn json(&self) -> Result<Value, Failure>;
    fn row(&self) -> Vec<String>;
    /// Field/value pairs for `show`; an empty field continues the previous one.
    fn fields(&self) -> Vec<(String, String)>;
}

pub fn print_one<T: Show>(out: Output, item: &T) -> Result<(), Failure> {
    match out {
        Output::Json => print_json(&item.json()?),
        Output::Table => {
            let mut t = Table::fields();
            for (k, v) in item.fields() {
                t.row([k, v]);
            }
            emit(&t.render())
        }
    }
}

pub fn print_list<T: Show>(out: Output, items: &[T]) -> Result<(), Failure> {
    match out {
        Output::Json => {
            let list = items
                .iter()
                .map(Show::json)
                .collect::<Result<Vec<_>, _>>()?;
            print_json(&Value::Array(list))
        }
        Output::Table if items.is_empty() => emit_line(&format!("no {}", T::PLURAL)),
        Output::Table => {
            let mut t = Table::new(T::COLUMNS);
            for item in items {
                t.row(item.row());
            }
            emit(&t.render())
        }
    }
}

/// What `remove` prints.
pub fn print_removed(out: Output, noun: &str, name: &str) -> Result<(), Failure> {
    match out {
        Output::Json => {
            print_json(&serde_json::json!({ "kind": noun, "name": name, "removed": true }))
        }
        Output::Table => emit_line(&format!("removed {noun} {name}")),
    }
}

/// The server answered with something the model refuses: client and server disagree.
pub fn bad_reply(noun: &str, name: &str, e: FieldError) -> Failure {
    Failure::BadReply(format!(
        "the server sent {noun} '{name}' that mediatorctl cannot read ({e}); \
         are mediatorctl and mediator-control the same version?"
    ))
}

pub fn revision(meta: Option<&pb::Meta>) -> String {
    meta.map_or_else(|| "-".into(), |m| m.revision.to_string())
}

/// Revision and timestamps, the tail of every `show`.
pub fn meta_fields(meta: Option<&pb::Meta>) -> Vec<(String, String)> {
    let Some(m) = meta else {
        return Vec::new();
    };
    vec![
        ("revision".into(), m.revision.to_string()),
        ("created".into(), when(m.created_unix_ms)),
        ("updated".into(), when(m.updated_unix_ms)),
    ]
}

pub fn transport_name(t: i32) -> String {
    convert::transport_from_pb("", t).map_or_else(|_| format!("unknown({t})"), |t| t.name().into())
}

pub fn kind_name(k: i32) -> String {
    convert::kind_from_pb("", k).map_or_else(|_| format!("unknown({k})"), |k| k.name().into())
}

pub fn host_port_text(h: Option<&pb::HostPort>) -> String {
    match h {
        None => "-".into(),
        Some(h) if h.host.contains(':') => {
            format!("[{}]:{} ({})", h.host, h.port, transport_name(h.transport))
        }
        Some(h) => format!("{}:{} ({})", h.host, h.port, transport_name(h.transport)),
    }
}

/// DNS answers as `show` lists them: one field per answer, e.g. `gw.example.com (udp, SRV)` =
/// `SRV until 2025-03-01 09:30:00Z: 10/60 a.example.com:5060 [198.18.0.2]; 20/0 …`.
pub fn resolution_fields(label: &str, rs: &[pb::Resolution]) -> Vec<(String, String)> {
    rs.iter()
        .map(|r| {
            let targets: Vec<String> = r
                .targets
                .iter()
                .map(|t| {
                    format!(
                        "{}/{} {}:{} [{}]",
                        t.priority,
                        t.weight,
                        t.name,
                        t.port,
                        t.addresses.join(" ")
                    )
                })
                .collect();
            let what = if r.error.is_empty() {
                format!(
                    "{} until {}: {}",
                    r.how,
                    when(r.expires_unix_ms),
                    targets.join("; ")
                )
            } else {
                format!(
                    "unresolved ({}), asked again at {}",
                    r.error,
                    when(r.expires_unix_ms)
                )
            };
            (format!("{label} {}", r.query), what)
        })
        .collect()
}

/// DNS answers in JSON output.
pub fn resolution_json(rs: &[pb::Resolution]) -> Value {
    rs.iter()
        .map(|r| {
            serde_json::json!({
                "query": r.query,
                "how": r.how,
                "expires_unix_ms": r.expires_unix_ms,
                "error": r.error,
                "targets": r.targets.iter().map(|t| serde_json::json!({
                    "name": t.name,
                    "priority": t.priority,
                    "weight": t.weight,
                    "port": t.port,
                    "addresses": t.addresses,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// An empty list or string as a visible dash, so columns never look shifted.
pub fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

pub fn joined(items: &[String]) -> String {
    or_dash(items.join(", "))
}

/// Milliseconds since the epoch as UTC, `2025-03-01 09:30:00Z`; 0 (never) as a dash.
pub fn when(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".into();
    }
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil for the proleptic Gregorian calendar, unsigned because the
/// API's timestamps cannot precede 1970.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims() {
        let mut t = Table::new(&["NAME", "SITE", "REVISION"]);
        t.row(["pool1.contoso.com", "redmond", "3"]);
        t.row(["p2.contoso.com", "dublin", "12"]);
        assert_eq!(
            t.render(),
            "NAME               SITE     REVISION\n\
             pool1.contoso.com  redmond  3\n\
             p2.contoso.com     dublin   12\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes_and_escapes_controls() {
        let mut t = Table::fields();
        t.row(["description", "Zürich\nline two"]);
        t.row(["site", "x"]);
        assert_eq!(
            t.render(),
            "description  Zürich\\nline two\nsite         x\n"
        );
        let mut t = Table::new(&["A", "B"]);
        t.row(["é", ""]);
        assert_eq!(t.render(), "A  B\né\n");
    }

    #[test]
    fn ragged_rows_do_not_panic() {
        let mut t = Table::new(&["A"]);
        t.row(["x", "y", "z"]);
        t.row(Vec::<String>::new());
        assert_eq!(t.render(), "A\nx  y  z\n\n");
        assert_eq!(Table::fields().render(), "");
    }

    #[test]
    fn timestamps() {
        assert_eq!(when(0), "-");
        assert_eq!(when(1), "1970-01-01 00:00:00Z");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(when(1_740_821_405_123), "2025-03-01 09:30:05Z");
        assert!(when(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn names_of_unknown_enum_values() {
        assert_eq!(transport_name(3), "tls");
        assert_eq!(transport_name(9), "unknown(9)");
        assert_eq!(kind_name(2), "ip-pbx");
        assert_eq!(
            host_port_text(Some(&pb::HostPort {
                host: "2001:db8::1".into(),
                port: 5061,
                transport: 3
            })),
            "[2001:db8::1]:5061 (tls)"
        );
    }
}
