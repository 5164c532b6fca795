//! `mediatorctl topology …`: the whole topology as one TOML document, like publishing from Lync's
//! Topology Builder.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mediator_proto::control::v1 as pb;
use serde_json::json;

use crate::output::{Output, emit, emit_line, print_json};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl topology export --file topology.toml
  mediatorctl topology import topology.toml --dry-run
  mediatorctl topology import topology.toml";

const EXPORT_EXAMPLES: &str = "\
Examples:
  mediatorctl topology export > topology.toml
  mediatorctl topology export --file /var/backups/mediator/topology-$(date +%F).toml";

const IMPORT_EXAMPLES: &str = "\
Examples:
  mediatorctl topology import topology.toml --dry-run
  mediatorctl topology import topology.toml
  ssh ctl1.contoso.com cat topology.toml | mediatorctl topology import -";

#[derive(Subcommand, Debug)]
pub enum TopologyCmd {
    /// Print the whole topology as TOML, or write it to a file.
    ///
    /// The document is TOML whatever --output says.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export {
        /// Write the document here instead of printing it.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Make the topology what a TOML document says: creates, updates and deletes as needed.
    ///
    /// The whole document is checked first; then all of it is applied, or nothing. Each change
    /// is printed as `create trunk gw1-5068`.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import {
        /// The TOML document ("-" reads stdin).
        file: PathBuf,
        /// Only report the changes; apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn read_document(file: &Path) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| {
        usage_error(format!(
            "cannot read {}: {e}; give the path of a topology TOML document (e.g. from \
             `mediatorctl topology export`)",
            file.display()
        ))
    })?;
    Ok(text)
}

/// What `import` prints: one line per change, then whether anything was applied.
pub fn import_report(r: &pb::ImportTopologyResponse, dry_run: bool) -> String {
    let mut text = String::new();
    for c in &r.changes {
        text.push_str(&format!("{} {} {}\n", c.action, c.kind, c.name));
        for f in &c.fields {
            text.push_str(&format!("    {f}\n"));
        }
    }
    let n = r.changes.len();
    let changes = if n == 1 {
        "1 change".to_string()
    } else {
        format!("{n} changes")
    };
    let summary = if n == 0 && dry_run {
        "dry run: nothing was applied; the topology already matches the document".to_string()
    } else if n == 0 {
        "no changes: the topology already matches the document".to_string()
    } else if r.applied {
        format!("applied {changes}")
    } else if dry_run {
        format!("dry run: nothing was applied ({changes} would be made)")
    } else {
        format!("nothing was applied ({changes} listed)")
    };
    text.push_str(&summary);
    text.push('\n');
    text
}

pub async fn run(ctx: &mut Ctx, cmd: TopologyCmd) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.client;
    match cmd {
        TopologyCmd::Export { file } => {
            let doc = client
                .export_topology(pb::ExportTopologyRequest {})
                .await?
                .into_inner()
                .toml;
            match file {
                None => emit(&doc),
                Some(path) => {
                    std::fs::write(&path, &doc).map_err(|e| {
                        usage_error(format!(
                            "cannot write {}: {e}; give --file a path in a writable directory",
                            path.display()
                        ))
                    })?;
                    match out {
                        Output::Json => print_json(&json!({ "file": path.display().to_string() })),
                        Output::Table => {
                            emit_line(&format!("wrote the topology to {}", path.display()))
                        }
                    }
                }
            }
        }
        TopologyCmd::Import { file, dry_run } => {
            let toml = read_document(&file)?;
            let r = client
                .import_topology(pb::ImportTopologyRequest { toml, dry_run })
                .await?
                .into_inner();
            match out {
                Output::Json => {
                    let changes: Vec<_> = r
                        .changes
                        .iter()
                        .map(|c| json!({ "action": c.action, "kind": c.kind, "name": c.name, "fields": c.fields }))
                        .collect();
                    print_json(&json!({
                        "applied": r.applied,
                        "dry_run": dry_run,
                        "changes": changes,
                    }))
                }
                Output::Table => emit(&import_report(&r, dry_run)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &str, kind: &str, name: &str) -> pb::TopologyChange {
        pb::TopologyChange {
            action: action.into(),
            kind: kind.into(),
            name: name.into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn import_reports() {
        let r = pb::ImportTopologyResponse {
            changes: vec![
                change("create", "trunk", "gw1-5068"),
                change("delete", "route", "old"),
            ],
            applied: false,
        };
        assert_eq!(
            import_report(&r, true),
            "create trunk gw1-5068\ndelete route old\n\
             dry run: nothing was applied (2 changes would be made)\n"
        );
        let r = pb::ImportTopologyResponse {
            applied: true,
            changes: vec![change("update", "pool", "pool1.contoso.com")],
        };
        assert_eq!(
            import_report(&r, false),
            "update pool pool1.contoso.com\napplied 1 change\n"
        );
        assert!(
            import_report(&pb::ImportTopologyResponse::default(), false).starts_with("no changes")
        );
    }

    #[test]
    fn unreadable_files_are_usage_errors() {
        let missing = Path::new("/nonexistent/mediator/topology.toml");
        assert!(matches!(read_document(missing), Err(Failure::Usage(_))));
    }
}
