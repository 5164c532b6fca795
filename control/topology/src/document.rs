//! The topology document (Lync's Topology Builder "publish"): the whole topology as one TOML
//! document. Export writes it; import validates all of it — every error with its location — and
//! then replaces the topology with it in one transaction, or, with a dry run, only reports the
//! changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Gateway, GatewayKind, Meta, Pool, PstnUsage, Transport, Trunk, VoiceRoute};
use crate::topology::{
    Changes, DocError, Item, Kind, Resource, Topology, TopologyError, TrunkConfig,
};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<Pool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<GatewayDoc>,
    /// Every trunk that is not a gateway's root trunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<Trunk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk_configuration: Vec<TrunkConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pstn_usage: Vec<PstnUsage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voice_route: Vec<VoiceRoute>,
}

/// A gateway with its root trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayDoc {
    pub name: String,
    pub kind: GatewayKind,
    pub site: String,
    pub root_trunk: RootTrunkDoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootTrunkDoc {
    pub gateway_port: u16,
    pub transport: Transport,
    pub pool: String,
    pub pool_port: u16,
}

/// One change an import makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub action: &'static str,
    pub kind: Kind,
    pub name: String,
    /// For an update: each changed field as "field: old -> new".
    pub fields: Vec<String>,
}

/// The top-level fields that differ between two values of a resource.
fn changed_fields<R: Resource>(old: &R, new: &R) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&serde_json::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

const HEADER: &str = "# Mediator topology document (mediatorctl topology export / import).\n\
                      # Import replaces the whole topology with this one: what is not here is deleted.\n\n";

impl Topology {
    pub fn to_document(&self) -> Document {
        let gateway = self
            .gateways
            .values()
            .filter_map(|g| {
                let root = &self.trunks.get(&g.value.name)?.value;
                Some(GatewayDoc {
                    name: g.value.name.clone(),
                    kind: g.value.kind,
                    site: g.value.site.clone(),
                    root_trunk: RootTrunkDoc {
                        gateway_port: root.gateway_port,
                        transport: root.transport,
                        pool: root.pool.clone(),
                        pool_port: root.pool_port,
                    },
                })
            })
            .collect();
        Document {
            pool: self.pools.values().map(|i| i.value.clone()).collect(),
            gateway,
            trunk: self
                .trunks
                .values()
                .filter(|t| !t.value.is_root())
                .map(|i| i.value.clone())
                .collect(),
            trunk_configuration: self.configs.values().map(|i| i.value.clone()).collect(),
            pstn_usage: self.usages.values().map(|i| i.value.clone()).collect(),
            voice_route: self.routes.values().map(|i| i.value.clone()).collect(),
        }
    }

    pub fn export(&self) -> Result<String, TopologyError> {
        toml::to_string_pretty(&self.to_document())
            .map(|s| format!("{HEADER}{s}"))
            .map_err(|e| TopologyError::Store(format!("writing the document: {e}")))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Line numbers of each `[[kind]]` header, in order: entry i of a kind is at the i-th header.
fn header_lines(text: &str) -> BTreeMap<&'static str, Vec<usize>> {
    let mut out: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        for kind in Kind::ALL {
            if l == format!("[[{}]]", kind.name()) {
                out.entry(kind.name()).or_default().push(n + 1);
            }
        }
    }
    out
}

struct Locator {
    lines: BTreeMap<&'static str, Vec<usize>>,
}

impl Locator {
    fn at(&self, kind: Kind, index: usize, name: &str) -> String {
        let line = self
            .lines
            .get(kind.name())
            .and_then(|v| v.get(index))
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        format!("{}[{index}] \"{name}\"{line}", kind.name())
    }
}

/// Builds the topology a document describes, keeping the metadata of what is unchanged, and
/// collects every error found (field validation, duplicates, references) with its location.
struct Builder<'a> {
    t: Topology,
    current: &'a Topology,
    now: u64,
    loc: &'a Locator,
    errors: Vec<DocError>,
    index: BTreeMap<(Kind, String), usize>,
}

impl Builder<'_> {
    fn meta<R: Resource>(&self, value: &R) -> Meta {
        match R::map(self.current).get(value.name()) {
            Some(old) if old.value == *value => old.meta,
            Some(old) => Meta {
                revision: old.meta.revision + 1,
                updated_unix_ms: self.now,
                ..old.meta
            },
            None => Meta {
                revision: 1,
                created_unix_ms: self.now,
                updated_unix_ms: self.now,
            },
        }
    }

    fn error(&mut self, kind: Kind, i: usize, name: &str, message: impl Into<String>) {
        let location = self.loc.at(kind, i, name);
        self.errors.push(DocError {
            location,
            message: message.into(),
        });
    }

    fn put<R: Resource>(&mut self, value: R, i: usize) {
        if let Err(e) = value.validate() {
            self.error(R::KIND, i, value.name(), e.to_string());
            return;
        }
        let name = value.name().to_string();
        if R::map(&self.t).contains_key(&name) {
            self.error(
                R::KIND,
                i,
                &name,
                format!("a second {} named '{name}'", R::KIND.name()),
            );
            return;
        }
        let meta = self.meta(&value);
        self.index.insert((R::KIND, name.clone()), i);
        R::map_mut(&mut self.t).insert(name, Item { meta, value });
    }

    fn build(mut self, doc: Document) -> Result<Topology, Vec<DocError>> {
        for (i, p) in doc.pool.into_iter().enumerate() {
            self.put(p, i);
        }
        for (i, g) in doc.gateway.into_iter().enumerate() {
            let root = Trunk {
                name: g.name.clone(),
                gateway: g.name.clone(),
                gateway_port: g.root_trunk.gateway_port,
                transport: g.root_trunk.transport,
                pool: g.root_trunk.pool.clone(),
                pool_port: g.root_trunk.pool_port,
            };
            self.put(
                Gateway {
                    name: g.name,
                    kind: g.kind,
                    site: g.site,
                },
                i,
            );
            if self.t.trunks.contains_key(&root.name) {
                self.error(
                    Kind::Gateway,
                    i,
                    &root.name,
                    "its root trunk's name is taken by a trunk",
                );
                continue;
            }
            if let Err(e) = root.validate() {
                self.error(Kind::Gateway, i, &root.name, format!("root_trunk.{e}"));
                continue;
            }
            let meta = self.meta(&root);
            self.t
                .trunks
                .insert(root.name.clone(), Item { meta, value: root });
        }
        let root_names: Vec<String> = self.t.trunks.keys().cloned().collect();
        for (i, tr) in doc.trunk.into_iter().enumerate() {
            if tr.name == tr.gateway {
                self.error(Kind::Trunk, i, &tr.name, "a trunk named after its gateway is the root trunk: give it in the gateway's root_trunk");
            } else if root_names.contains(&tr.name) {
                self.error(Kind::Trunk, i, &tr.name, "the name of a root trunk");
            } else {
                self.put(tr, i);
            }
        }
        for (i, c) in doc.trunk_configuration.into_iter().enumerate() {
            self.put(c, i);
        }
        for (i, u) in doc.pstn_usage.into_iter().enumerate() {
            self.put(u, i);
        }
        for (i, r) in doc.voice_route.into_iter().enumerate() {
            self.put(r, i);
        }
        for (kind, name, e) in self.t.integrity_errors() {
            // A root trunk is located at its gateway; the global configuration may be missing.
            let (location, message) = match (
                self.index.get(&(kind, name.clone())),
                self.index.get(&(Kind::Gateway, name.clone())),
            ) {
                (Some(&i), _) => (self.loc.at(kind, i, &name), e.to_string()),
                (None, Some(&i)) if kind == Kind::Trunk => (
                    self.loc.at(Kind::Gateway, i, &name),
                    format!("root_trunk.{e}"),
                ),
                _ => (kind.name().to_string(), e.to_string()),
            };
            self.errors.push(DocError { location, message });
        }
        if self.errors.is_empty() {
            Ok(self.t)
        } else {
            Err(self.errors)
        }
    }
}

/// What turns `current` into `next`, in a stable order.
fn diff(current: &Topology, next: &Topology) -> Vec<Change> {
    fn each<R: Resource>(c: &Topology, n: &Topology, out: &mut Vec<Change>) {
        for (name, item) in R::map(n) {
            match R::map(c).get(name) {
                None => out.push(Change {
                    action: "create",
                    kind: R::KIND,
                    name: name.clone(),
                    fields: Vec::new(),
                }),
                Some(old) if old.value != item.value => out.push(Change {
                    action: "update",
                    kind: R::KIND,
                    name: name.clone(),
                    fields: changed_fields(&old.value, &item.value),
                }),
                _ => {}
            }
        }
        for name in R::map(c).keys().filter(|k| !R::map(n).contains_key(*k)) {
            out.push(Change {
                action: "delete",
                kind: R::KIND,
                name: name.clone(),
                fields: Vec::new(),
            });
        }
    }
    let mut out = Vec::new();
    each::<Pool>(current, next, &mut out);
    each::<Gateway>(current, next, &mut out);
    each::<Trunk>(current, next, &mut out);
    each::<TrunkConfig>(current, next, &mut out);
    each::<PstnUsage>(current, next, &mut out);
    each::<VoiceRoute>(current, next, &mut out);
    out
}

impl Topology {
    /// Replaces this topology with the document, all or nothing, recording the store changes in
    /// `ch`. Returns the changes; with `dry_run` nothing is applied. On an error the topology is
    /// as it was.
    pub fn import(
        &mut self,
        text: &str,
        dry_run: bool,
        now: u64,
        ch: &mut Changes,
    ) -> Result<Vec<Change>, TopologyError> {
        if text.len() > 16 << 20 {
            return Err(TopologyError::Document(vec![DocError {
                location: "document".into(),
                message: "larger than 16 MiB".into(),
            }]));
        }
        let doc: Document = toml::from_str(text).map_err(|e| {
            let location = e
                .span()
                .map(|s| format!("line {}", line_of(text, s.start)))
                .unwrap_or_else(|| "document".into());
            TopologyError::Document(vec![DocError {
                location,
                message: e.message().trim().to_string(),
            }])
        })?;
        let loc = Locator {
            lines: header_lines(text),
        };
        let t = self;
        let builder = Builder {
            t: Topology {
                moves: t.moves.clone(),
                ..Default::default()
            },
            current: t,
            now,
            loc: &loc,
            errors: Vec::new(),
            index: BTreeMap::new(),
        };
        let next = builder.build(doc).map_err(TopologyError::Document)?;
        let changes = diff(t, &next);
        if dry_run {
            return Ok(changes);
        }
        record(&next, &changes, ch)?;
        *t = next;
        Ok(changes)
    }
}

/// Turns the import's changes into store changes.
fn record(next: &Topology, changes: &[Change], ch: &mut Changes) -> Result<(), TopologyError> {
    fn put<R: Resource>(t: &Topology, name: &str, ch: &mut Changes) -> Result<(), TopologyError> {
        let item = t.get::<R>(name)?;
        let bytes = serde_json::to_vec(item).map_err(|e| TopologyError::Store(e.to_string()))?;
        ch.puts.push((R::KIND, name.to_string(), bytes));
        Ok(())
    }
    for c in changes {
        if c.action == "delete" {
            ch.deletes.push((c.kind, c.name.clone()));
            continue;
        }
        match c.kind {
            Kind::Pool => put::<Pool>(next, &c.name, ch)?,
            Kind::Gateway => put::<Gateway>(next, &c.name, ch)?,
            Kind::Trunk => put::<Trunk>(next, &c.name, ch)?,
            Kind::TrunkConfiguration => put::<TrunkConfig>(next, &c.name, ch)?,
            Kind::PstnUsage => put::<PstnUsage>(next, &c.name, ch)?,
            Kind::VoiceRoute => put::<VoiceRoute>(next, &c.name, ch)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A topology in memory with the daemon's import and export calls.
    struct Mem(Topology);

    impl Mem {
        fn new() -> Mem {
            Mem(Topology::initial(1).0)
        }

        fn import(&mut self, text: &str, dry_run: bool) -> Result<Vec<Change>, TopologyError> {
            self.0.import(text, dry_run, 2, &mut Changes::default())
        }

        fn export(&self) -> Result<String, TopologyError> {
            self.0.export()
        }
    }

    const DOC: &str = r#"
[[pool]]
name = "pool1.contoso.com"
site = "redmond"
dataplanes = ["198.18.1.1:7400"]
pool_side_listen = "198.18.1.1:5060"
gateway_side_address = "198.18.2.1"
next_hop = { host = "fe.contoso.com", port = 5061, transport = "tls" }

[[gateway]]
name = "gw1.contoso.com"
kind = "pstn-gateway"
site = "redmond"
root_trunk = { gateway_port = 5067, transport = "tls", pool = "pool1.contoso.com", pool_port = 5067 }

[[trunk]]
name = "gw1-5068"
gateway = "gw1.contoso.com"
gateway_port = 5068
transport = "tcp"
pool = "pool1.contoso.com"
pool_port = 5068

[[trunk_configuration]]
name = "global"
[trunk_configuration.settings]
srtp_mode = "required"
media_bypass = false
refer_support = true
rtcp_active_calls = true
rtcp_calls_on_hold = true
session_timer = false
max_early_dialogs = 20
remove_plus_from_uri = false
fast_failover = true
fast_failover_timeout_secs = 10
rtp_latching = false
forward_pai = false
forward_call_history = false
called_number_rules = []
calling_number_rules = []
inbound_called_number_rules = []
inbound_calling_number_rules = []
response_code_rules = [{ received = 408, translated = 503 }]
srtp_passthrough = false
options_interval_secs = 60
options_failures = 5
follow_redirects = false
large_requests_over_tcp = false
ring_limit_secs = 240

[[trunk_configuration]]
name = "trunk:gw1-5068"
[trunk_configuration.settings]
called_number_rules = [{ name = "national", pattern = '^\+1(\d{10})$', translation = "1$1" }]

[[pstn_usage]]
name = "Local"
priority = 1

[[voice_route]]
name = "redmond"
pattern = '^\+1425(\d{7})$'
trunks = ["gw1-5068", "gw1.contoso.com"]
pstn_usages = ["Local"]
"#;

    #[test]
    fn import_export_round_trip_is_identical() {
        let mut r = Mem::new();
        let changes = r.import(DOC, false).expect("import");
        assert_eq!(
            changes.iter().filter(|c| c.action == "create").count(),
            7,
            "{changes:?}"
        );
        let updates: Vec<&Change> = changes.iter().filter(|c| c.action == "update").collect();
        assert_eq!(updates.len(), 1, "the global configuration");
        assert_eq!(updates[0].fields.len(), 1, "{:?}", updates[0].fields);
        assert!(
            updates[0].fields[0].starts_with("settings: "),
            "the diff names the field: {:?}",
            updates[0].fields
        );
        let exported = r.export().expect("export");
        let mut r2 = Mem::new();
        r2.import(&exported, false).expect("import the export");
        assert_eq!(
            r2.export().expect("export"),
            exported,
            "export -> import -> export is identical"
        );
        assert!(
            r.import(&exported, false).expect("re-import").is_empty(),
            "importing the same changes nothing"
        );
    }

    #[test]
    fn dry_run_reports_and_changes_nothing() {
        let mut r = Mem::new();
        let before = r.export().expect("export");
        let changes = r.import(DOC, true).expect("dry run");
        assert!(!changes.is_empty());
        assert_eq!(r.export().expect("export"), before);
    }

    #[test]
    fn a_bad_document_changes_nothing_and_reports_every_error_with_its_place() {
        let mut r = Mem::new();
        r.import(DOC, false).expect("import");
        let before = r.export().expect("export");
        let bad = DOC
            .replace(
                r#"pool_port = 5068"#,
                r#"pool_port = 5068
[[trunk]]
name = "gw1-5069"
gateway = "gw9.contoso.com"
gateway_port = 5069
transport = "tcp"
pool = "pool1.contoso.com"
pool_port = 5069"#,
            )
            .replace(
                r#"pattern = '^\+1425(\d{7})$'"#,
                r#"pattern = '^\+1425(\d{7}$'"#,
            )
            .replace(
                r#"name = "Local""#,
                r#"name = "Local"
[[pstn_usage]]
name = "Local""#,
            );
        let e = r.import(&bad, false).expect_err("bad document");
        let TopologyError::Document(errors) = e else {
            panic!("not a document error: {e}")
        };
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("trunk[1] \"gw1-5069\" (line ")
                    && t.contains("gateway 'gw9.contoso.com' does not exist")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("voice_route[0] \"redmond\"") && t.contains("pattern")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("pstn_usage[1] \"Local\"") && t.contains("second")),
            "{text:#?}"
        );
        assert_eq!(r.export().expect("export"), before, "nothing changed");

        let e = r
            .import("[[pool]]\nname = 1\n", false)
            .expect_err("type error");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = r.import("[[pools]]\n", false).expect_err("unknown key");
        assert!(e.to_string().contains("pools"), "{e}");
    }

    #[test]
    fn import_deletes_what_the_document_leaves_out() {
        let mut r = Mem::new();
        r.import(DOC, false).expect("import");
        let smaller = DOC
            .split("[[pstn_usage]]")
            .next()
            .expect("head")
            .to_string();
        let changes = r.import(&smaller, false).expect("import smaller");
        let deleted: Vec<(&str, &str)> = changes
            .iter()
            .filter(|c| c.action == "delete")
            .map(|c| (c.kind.name(), c.name.as_str()))
            .collect();
        assert_eq!(
            deleted,
            [("pstn_usage", "Local"), ("voice_route", "redmond")]
        );
    }
}
