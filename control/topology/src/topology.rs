//! The topology in memory: every resource with its metadata, the generic create / update / delete
//! with revision checks, referential integrity, and the dependents that block a delete.
//!
//! A write works on a copy; only when it validates are its [`Changes`] made durable by the store
//! and the copy swapped in (see mediator-control's registry). No I/O here.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{
    FieldError, Gateway, Meta, Pool, PstnUsage, Scope, Settings, Trunk, TrunkMove, VoiceRoute,
    field_error,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pool,
    Gateway,
    Trunk,
    TrunkConfiguration,
    PstnUsage,
    VoiceRoute,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Pool,
        Kind::Gateway,
        Kind::Trunk,
        Kind::TrunkConfiguration,
        Kind::PstnUsage,
        Kind::VoiceRoute,
    ];
    /// How messages and the topology document name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Gateway => "gateway",
            Kind::Trunk => "trunk",
            Kind::TrunkConfiguration => "trunk_configuration",
            Kind::PstnUsage => "pstn_usage",
            Kind::VoiceRoute => "voice_route",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("{kind} '{name}' not found", kind = .kind.name())]
    NotFound { kind: Kind, name: String },
    #[error("{kind} '{name}' already exists", kind = .kind.name())]
    AlreadyExists { kind: Kind, name: String },
    #[error("{kind} '{name}' is in use by {}", .dependents.join(", "), kind = .kind.name())]
    InUse {
        kind: Kind,
        name: String,
        dependents: Vec<String>,
    },
    #[error("{what}")]
    Precondition { what: String },
    #[error("{kind} '{name}' is at revision {actual}, not {expected}: re-read it and retry", kind = .kind.name())]
    Conflict {
        kind: Kind,
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("the topology document has {} error(s): {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Document(Vec<DocError>),
    #[error("store: {0}")]
    Store(String),
}

impl From<FieldError> for TopologyError {
    fn from(e: FieldError) -> Self {
        TopologyError::Invalid(e)
    }
}

/// An error in a topology document, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocError {
    /// e.g. `trunk[2] "gw1-5068" (line 41)`.
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A stored resource: its value and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item<T> {
    pub meta: Meta,
    pub value: T,
}

/// The trunk configuration of one scope; `name` is the scope ("global", "site:X", "trunk:Y").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    #[serde(default)]
    pub settings: Settings,
}

impl TrunkConfig {
    pub fn scope(&self) -> Result<Scope, FieldError> {
        Scope::parse(&self.name)
    }
}

/// What a write changed, for the store to make durable in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub puts: Vec<(Kind, String, Vec<u8>)>,
    pub deletes: Vec<(Kind, String)>,
    pub moves: Vec<TrunkMove>,
}

impl Changes {
    fn put<R: Resource>(&mut self, item: &Item<R>) -> Result<(), TopologyError> {
        let bytes = serde_json::to_vec(item).map_err(|e| TopologyError::Store(e.to_string()))?;
        self.puts
            .push((R::KIND, item.value.name().to_string(), bytes));
        Ok(())
    }
    fn delete(&mut self, kind: Kind, name: &str) {
        self.deletes.push((kind, name.to_string()));
    }
}

/// One kind of topology resource.
pub trait Resource: Clone + Serialize + DeserializeOwned + PartialEq {
    const KIND: Kind;
    fn name(&self) -> &str;
    fn validate(&self) -> Result<(), FieldError>;
    fn map(t: &Topology) -> &BTreeMap<String, Item<Self>>;
    fn map_mut(t: &mut Topology) -> &mut BTreeMap<String, Item<Self>>;
    /// Its references to other resources exist and its unique keys are unique.
    fn check_refs(&self, _t: &Topology) -> Result<(), FieldError> {
        Ok(())
    }
    /// What would dangle if it were deleted.
    fn dependents(&self, _t: &Topology) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub pools: BTreeMap<String, Item<Pool>>,
    pub gateways: BTreeMap<String, Item<Gateway>>,
    pub trunks: BTreeMap<String, Item<Trunk>>,
    pub configs: BTreeMap<String, Item<TrunkConfig>>,
    pub usages: BTreeMap<String, Item<PstnUsage>>,
    pub routes: BTreeMap<String, Item<VoiceRoute>>,
    pub moves: Vec<TrunkMove>,
}

macro_rules! resource_map {
    ($ty:ty, $kind:expr, $field:ident) => {
        fn map(t: &Topology) -> &BTreeMap<String, Item<Self>> {
            &t.$field
        }
        fn map_mut(t: &mut Topology) -> &mut BTreeMap<String, Item<Self>> {
            &mut t.$field
        }
        const KIND: Kind = $kind;
    };
}

impl Resource for Pool {
    resource_map!(Pool, Kind::Pool, pools);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        Pool::validate(self)
    }
    fn check_refs(&self, t: &Topology) -> Result<(), FieldError> {
        // Trunks are told apart by (gateway, pool, port): two pools on one address would listen
        // on the same socket.
        for other in t
            .pools
            .values()
            .map(|p| &p.value)
            .filter(|o| o.name != self.name)
        {
            if other.gateway_side_address == self.gateway_side_address {
                return Err(field_error(
                    "gateway_side_address",
                    format!(
                        "{} is pool '{}'s address too",
                        self.gateway_side_address, other.name
                    ),
                ));
            }
            if other.pool_side_listen == self.pool_side_listen {
                return Err(field_error(
                    "pool_side_listen",
                    format!("{} is pool '{}'s too", self.pool_side_listen, other.name),
                ));
            }
        }
        Ok(())
    }
    fn dependents(&self, t: &Topology) -> Vec<String> {
        t.trunks
            .values()
            .filter(|x| x.value.pool == self.name)
            .map(|x| format!("trunk '{}'", x.value.name))
            .collect()
    }
}

impl Resource for Gateway {
    resource_map!(Gateway, Kind::Gateway, gateways);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        Gateway::validate(self)
    }
    fn check_refs(&self, t: &Topology) -> Result<(), FieldError> {
        if !t.trunks.contains_key(&self.name) {
            return Err(field_error("root_trunk", "a gateway needs its root trunk"));
        }
        Ok(())
    }
    fn dependents(&self, t: &Topology) -> Vec<String> {
        // The root trunk goes with the gateway; what hangs on it or on the other trunks blocks.
        let mut out: Vec<String> = t
            .trunks
            .values()
            .filter(|x| x.value.gateway == self.name && !x.value.is_root())
            .map(|x| format!("trunk '{}'", x.value.name))
            .collect();
        if let Some(root) = t.trunks.get(&self.name) {
            out.extend(trunk_users(&root.value.name, t));
        }
        out
    }
}

/// Routes and trunk configurations that name a trunk.
fn trunk_users(trunk: &str, t: &Topology) -> Vec<String> {
    let mut out: Vec<String> = t
        .routes
        .values()
        .filter(|r| r.value.trunks.iter().any(|x| x == trunk))
        .map(|r| format!("voice route '{}'", r.value.name))
        .collect();
    let scope = Scope::Trunk(trunk.into()).to_string();
    if t.configs.contains_key(&scope) {
        out.push(format!("trunk configuration '{scope}'"));
    }
    out
}

impl Resource for Trunk {
    resource_map!(Trunk, Kind::Trunk, trunks);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        Trunk::validate(self)
    }
    fn check_refs(&self, t: &Topology) -> Result<(), FieldError> {
        if !t.gateways.contains_key(&self.gateway) {
            return Err(field_error(
                "gateway",
                format!("gateway '{}' does not exist", self.gateway),
            ));
        }
        if !t.pools.contains_key(&self.pool) {
            return Err(field_error(
                "pool",
                format!("pool '{}' does not exist", self.pool),
            ));
        }
        for other in t
            .trunks
            .values()
            .map(|x| &x.value)
            .filter(|o| o.name != self.name)
        {
            if other.gateway == self.gateway && other.gateway_port == self.gateway_port {
                return Err(field_error(
                    "gateway_port",
                    format!(
                        "{} is already the gateway port of trunk '{}' on gateway '{}'",
                        self.gateway_port, other.name, self.gateway
                    ),
                ));
            }
            if other.gateway == self.gateway
                && other.pool == self.pool
                && other.pool_port == self.pool_port
            {
                return Err(field_error(
                    "pool_port",
                    format!(
                        "trunk '{}' already joins gateway '{}' to pool '{}' port {}: calls from the gateway could not tell the trunks apart",
                        other.name, self.gateway, self.pool, self.pool_port
                    ),
                ));
            }
        }
        Ok(())
    }
    fn dependents(&self, t: &Topology) -> Vec<String> {
        trunk_users(&self.name, t)
    }
}

impl Resource for TrunkConfig {
    resource_map!(TrunkConfig, Kind::TrunkConfiguration, configs);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        let scope = self.scope()?;
        if let Scope::Site(s) = &scope {
            crate::model::check_label("name", s)?;
        }
        if scope == Scope::Global
            && let Some(missing) = self.settings.missing().first()
        {
            return Err(field_error(
                format!("settings.{missing}"),
                "the global scope must set every setting",
            ));
        }
        self.settings.validate("settings.")
    }
    fn check_refs(&self, t: &Topology) -> Result<(), FieldError> {
        if let Ok(Scope::Trunk(trunk)) = self.scope()
            && !t.trunks.contains_key(&trunk)
        {
            return Err(field_error(
                "name",
                format!("trunk '{trunk}' does not exist"),
            ));
        }
        Ok(())
    }
}

impl Resource for PstnUsage {
    resource_map!(PstnUsage, Kind::PstnUsage, usages);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        PstnUsage::validate(self)
    }
    fn dependents(&self, t: &Topology) -> Vec<String> {
        t.routes
            .values()
            .filter(|r| r.value.pstn_usages.contains(&self.name))
            .map(|r| format!("voice route '{}'", r.value.name))
            .collect()
    }
}

impl Resource for VoiceRoute {
    resource_map!(VoiceRoute, Kind::VoiceRoute, routes);
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<(), FieldError> {
        VoiceRoute::validate(self)
    }
    fn check_refs(&self, t: &Topology) -> Result<(), FieldError> {
        for (i, trunk) in self.trunks.iter().enumerate() {
            if !t.trunks.contains_key(trunk) {
                return Err(field_error(
                    format!("trunks[{i}]"),
                    format!("trunk '{trunk}' does not exist"),
                ));
            }
        }
        for (i, u) in self.pstn_usages.iter().enumerate() {
            if !t.usages.contains_key(u) {
                return Err(field_error(
                    format!("pstn_usages[{i}]"),
                    format!("PSTN usage '{u}' does not exist"),
                ));
            }
        }
        Ok(())
    }
}

impl Topology {
    /// An empty topology with its global trunk configuration at Lync's defaults.
    pub fn initial(now: u64) -> (Self, Changes) {
        let mut t = Topology::default();
        let mut ch = Changes::default();
        let global = TrunkConfig {
            name: "global".into(),
            settings: Settings::lync_defaults(),
        };
        let item = Item {
            meta: Meta {
                revision: 1,
                created_unix_ms: now,
                updated_unix_ms: now,
            },
            value: global,
        };
        let _ = ch.put(&item);
        t.configs.insert("global".into(), item);
        (t, ch)
    }

    pub fn get<R: Resource>(&self, name: &str) -> Result<&Item<R>, TopologyError> {
        R::map(self)
            .get(name)
            .ok_or_else(|| TopologyError::NotFound {
                kind: R::KIND,
                name: name.into(),
            })
    }

    pub fn create<R: Resource>(
        &mut self,
        value: R,
        now: u64,
        ch: &mut Changes,
    ) -> Result<Item<R>, TopologyError> {
        value.validate()?;
        if R::map(self).contains_key(value.name()) {
            return Err(TopologyError::AlreadyExists {
                kind: R::KIND,
                name: value.name().into(),
            });
        }
        value.check_refs(self)?;
        let item = Item {
            meta: Meta {
                revision: 1,
                created_unix_ms: now,
                updated_unix_ms: now,
            },
            value,
        };
        ch.put(&item)?;
        R::map_mut(self).insert(item.value.name().to_string(), item.clone());
        Ok(item)
    }

    /// Changes a resource in place with `edit`; its name cannot change.
    pub fn update<R: Resource>(
        &mut self,
        name: &str,
        expected_revision: u64,
        now: u64,
        ch: &mut Changes,
        edit: impl FnOnce(&mut R) -> Result<(), FieldError>,
    ) -> Result<Item<R>, TopologyError> {
        let current = self.get::<R>(name)?.clone();
        check_revision::<R>(name, expected_revision, current.meta.revision)?;
        let mut value = current.value.clone();
        edit(&mut value)?;
        if value.name() != name {
            return Err(field_error("name", "cannot change; create a new resource instead").into());
        }
        value.validate()?;
        value.check_refs(self)?;
        let meta = Meta {
            revision: current.meta.revision + 1,
            updated_unix_ms: now,
            ..current.meta
        };
        let item = Item { meta, value };
        ch.put(&item)?;
        R::map_mut(self).insert(name.to_string(), item.clone());
        Ok(item)
    }

    pub fn delete<R: Resource>(
        &mut self,
        name: &str,
        expected_revision: u64,
        ch: &mut Changes,
    ) -> Result<(), TopologyError> {
        let current = self.get::<R>(name)?;
        check_revision::<R>(name, expected_revision, current.meta.revision)?;
        let dependents = current.value.dependents(self);
        if !dependents.is_empty() {
            return Err(TopologyError::InUse {
                kind: R::KIND,
                name: name.into(),
                dependents,
            });
        }
        R::map_mut(self).remove(name);
        ch.delete(R::KIND, name);
        Ok(())
    }

    /// Every problem of a topology read back from the store: field validation, keys that do not
    /// match names, and integrity. A store that fails this is not served.
    pub fn load_errors(&self) -> Vec<String> {
        fn each<R: Resource>(t: &Topology, out: &mut Vec<String>) {
            for (key, item) in R::map(t) {
                if key != item.value.name() {
                    out.push(format!(
                        "{} stored under '{key}' is named '{}'",
                        R::KIND.name(),
                        item.value.name()
                    ));
                }
                if let Err(e) = item.value.validate() {
                    out.push(format!("{} '{key}': {e}", R::KIND.name()));
                }
            }
        }
        let mut out = Vec::new();
        each::<Pool>(self, &mut out);
        each::<Gateway>(self, &mut out);
        each::<Trunk>(self, &mut out);
        each::<TrunkConfig>(self, &mut out);
        each::<PstnUsage>(self, &mut out);
        each::<VoiceRoute>(self, &mut out);
        out.extend(
            self.integrity_errors()
                .into_iter()
                .map(|(k, n, e)| format!("{} '{n}': {e}", k.name())),
        );
        out
    }

    /// Every integrity problem of the whole topology (for a document import).
    pub fn integrity_errors(&self) -> Vec<(Kind, String, FieldError)> {
        fn each<R: Resource>(t: &Topology, out: &mut Vec<(Kind, String, FieldError)>) {
            for item in R::map(t).values() {
                if let Err(e) = item.value.check_refs(t) {
                    out.push((R::KIND, item.value.name().to_string(), e));
                }
            }
        }
        let mut out = Vec::new();
        each::<Pool>(self, &mut out);
        each::<Gateway>(self, &mut out);
        each::<Trunk>(self, &mut out);
        each::<TrunkConfig>(self, &mut out);
        each::<VoiceRoute>(self, &mut out);
        for t in self.trunks.values().filter(|t| t.value.is_root()) {
            if !self.gateways.contains_key(&t.value.gateway) {
                out.push((
                    Kind::Trunk,
                    t.value.name.clone(),
                    field_error("gateway", "root trunk without its gateway"),
                ));
            }
        }
        if !self.configs.contains_key("global") {
            out.push((
                Kind::TrunkConfiguration,
                "global".into(),
                field_error("name", "the global configuration must exist"),
            ));
        }
        out
    }
}

fn check_revision<R: Resource>(
    name: &str,
    expected: u64,
    actual: u64,
) -> Result<(), TopologyError> {
    if expected != 0 && expected != actual {
        return Err(TopologyError::Conflict {
            kind: R::KIND,
            name: name.into(),
            expected,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pool, sample, trunk};

    #[test]
    fn create_checks_fields_duplicates_and_references() {
        let mut t = sample();
        let mut ch = Changes::default();
        let e = t
            .create(pool("pool1.contoso.com"), 2, &mut ch)
            .expect_err("dup");
        assert!(matches!(
            e,
            TopologyError::AlreadyExists {
                kind: Kind::Pool,
                ..
            }
        ));
        let e = t
            .create(
                trunk("x", "gw1.contoso.com", 5068, "pool1.contoso.com", 6000),
                2,
                &mut ch,
            )
            .expect_err("port");
        assert_eq!(
            e,
            TopologyError::Invalid(field_error(
                "gateway_port",
                "5068 is already the gateway port of trunk 'gw1-5068' on gateway 'gw1.contoso.com'"
            ))
        );
        let e = t
            .create(
                trunk("x", "gw1.contoso.com", 6000, "nope.contoso.com", 6000),
                2,
                &mut ch,
            )
            .expect_err("pool");
        assert!(
            e.to_string()
                .contains("pool 'nope.contoso.com' does not exist"),
            "{e}"
        );
        let e = t
            .create(
                trunk("x", "gw1.contoso.com", 6000, "pool1.contoso.com", 5068),
                2,
                &mut ch,
            )
            .expect_err("ambiguous");
        assert!(e.to_string().starts_with("pool_port:"), "{e}");
        assert!(ch.puts.is_empty(), "nothing recorded for refused writes");
    }

    #[test]
    fn update_checks_revision_and_keeps_the_name() {
        let mut t = sample();
        let mut ch = Changes::default();
        let item = t
            .update::<Trunk>("gw1-5068", 1, 5, &mut ch, |x| {
                x.pool_port = 5070;
                Ok(())
            })
            .expect("update");
        assert_eq!(
            (
                item.meta.revision,
                item.meta.updated_unix_ms,
                item.value.pool_port
            ),
            (2, 5, 5070)
        );
        let e = t
            .update::<Trunk>("gw1-5068", 1, 6, &mut ch, |_| Ok(()))
            .expect_err("stale");
        assert!(matches!(
            e,
            TopologyError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ));
        let e = t
            .update::<Trunk>("gw1-5068", 0, 6, &mut ch, |x| {
                x.name = "renamed".into();
                Ok(())
            })
            .expect_err("rename");
        assert!(e.to_string().starts_with("name:"));
    }

    #[test]
    fn delete_names_the_dependents() {
        let mut t = sample();
        let mut ch = Changes::default();
        let e = t
            .delete::<Pool>("pool1.contoso.com", 0, &mut ch)
            .expect_err("in use");
        assert_eq!(
            e,
            TopologyError::InUse {
                kind: Kind::Pool,
                name: "pool1.contoso.com".into(),
                dependents: vec!["trunk 'gw1-5068'".into(), "trunk 'gw1.contoso.com'".into()],
            }
        );
        t.delete::<Trunk>("gw1-5068", 0, &mut ch)
            .expect("delete trunk");
        assert!(t.integrity_errors().is_empty());
    }
}
