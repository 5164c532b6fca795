//! The topology as the daemon serves it: reads from memory, and writes that validate on a copy,
//! become durable in one store transaction, and only then replace the served copy. A write that
//! fails at any step leaves both the store and the served topology as they were.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{Gateway, Pool, Trunk, TrunkMove, field_error};
use crate::store::{Store, StoreError};
use crate::topology::{Changes, Item, Kind, Resource, Topology, TopologyError};

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Registry {
    store: Store,
    topology: Mutex<Topology>,
}

impl Registry {
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let (store, topology) = Store::open(dir, unix_ms())?;
        Ok(Self {
            store,
            topology: Mutex::new(topology),
        })
    }

    /// Runs `f` on the served topology (no copy).
    pub fn read<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        let guard = match self.topology.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&guard)
    }

    /// The write protocol: `f` edits a copy and records its changes; the store makes them durable
    /// in one transaction; then the copy is served.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Topology, &mut Changes, u64) -> Result<R, TopologyError>,
    ) -> Result<R, TopologyError> {
        let mut guard = match self.topology.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut copy = guard.clone();
        let mut changes = Changes::default();
        let out = f(&mut copy, &mut changes, unix_ms())?;
        self.store
            .apply(&changes)
            .map_err(|e| TopologyError::Store(e.to_string()))?;
        *guard = copy;
        Ok(out)
    }

    pub fn create<R: Resource>(&self, value: R) -> Result<Item<R>, TopologyError> {
        self.write(|t, ch, now| t.create(value, now, ch))
    }

    pub fn update<R: Resource>(
        &self,
        name: &str,
        expected_revision: u64,
        edit: impl FnOnce(&mut R) -> Result<(), crate::model::FieldError>,
    ) -> Result<Item<R>, TopologyError> {
        self.write(|t, ch, now| t.update(name, expected_revision, now, ch, edit))
    }

    /// Deletes a resource; the kind-specific rules (root trunk, global configuration, gateway
    /// with its root trunk) apply.
    pub fn delete<R: Resource>(
        &self,
        name: &str,
        expected_revision: u64,
    ) -> Result<(), TopologyError> {
        self.write(|t, ch, _| {
            if R::KIND == Kind::Trunk && t.get::<Trunk>(name)?.value.is_root() {
                return Err(TopologyError::Precondition {
                    what: format!("trunk '{name}' is the root trunk of gateway '{name}': it goes with the gateway"),
                });
            }
            if R::KIND == Kind::TrunkConfiguration && name == "global" {
                return Err(TopologyError::Precondition {
                    what: "the global trunk configuration cannot be deleted; change its settings instead".into(),
                });
            }
            if R::KIND == Kind::Gateway {
                return delete_gateway(t, name, expected_revision, ch);
            }
            t.delete::<R>(name, expected_revision, ch)
        })
    }

    /// Creates a gateway together with its root trunk.
    pub fn create_gateway(
        &self,
        gateway: Gateway,
        root: Trunk,
    ) -> Result<(Item<Gateway>, Item<Trunk>), TopologyError> {
        self.write(|t, ch, now| create_gateway(t, gateway, root, now, ch))
    }

    /// Re-homes `trunk`, or every trunk of `from_pool`, to `to_pool` (optionally on a new pool
    /// port) and records the move. Calls in progress keep the pool they were set up on.
    pub fn move_trunks(
        &self,
        trunk: Option<&str>,
        from_pool: Option<&str>,
        to_pool: &str,
        pool_port: Option<u16>,
    ) -> Result<TrunkMove, TopologyError> {
        self.write(|t, ch, now| {
            t.get::<Pool>(to_pool).map_err(|_| TopologyError::Invalid(field_error("to_pool", format!("pool '{to_pool}' does not exist"))))?;
            let (from, names): (String, Vec<String>) = match (trunk, from_pool) {
                (Some(name), None) => {
                    let tr = t.get::<Trunk>(name)?;
                    (tr.value.pool.clone(), vec![name.to_string()])
                }
                (None, Some(pool)) => {
                    t.get::<Pool>(pool)?;
                    let names: Vec<String> =
                        t.trunks.values().filter(|x| x.value.pool == pool).map(|x| x.value.name.clone()).collect();
                    if names.is_empty() {
                        return Err(TopologyError::Precondition { what: format!("pool '{pool}' has no trunks to move") });
                    }
                    (pool.to_string(), names)
                }
                _ => return Err(field_error("trunk", "name either a trunk or from_pool, not both and not neither").into()),
            };
            if from == to_pool {
                return Err(field_error("to_pool", format!("the trunks are already on pool '{to_pool}'")).into());
            }
            for name in &names {
                t.update::<Trunk>(name, 0, now, ch, |tr| {
                    tr.pool = to_pool.to_string();
                    if let Some(p) = pool_port {
                        tr.pool_port = p;
                    }
                    Ok(())
                })
                .map_err(|e| match e {
                    TopologyError::Invalid(f) => TopologyError::Invalid(field_error(
                        "to_pool",
                        format!("trunk '{name}' cannot move: {}: {}", f.field, f.reason),
                    )),
                    other => other,
                })?;
            }
            let id = t.moves.iter().map(|m| m.id).max().unwrap_or(0) + 1;
            let m = TrunkMove { id, unix_ms: now, from_pool: from, to_pool: to_pool.into(), trunks: names };
            t.moves.push(m.clone());
            ch.moves.push(m.clone());
            tracing::info!(id, from = %m.from_pool, to = %m.to_pool, trunks = ?m.trunks, "trunks moved");
            Ok(m)
        })
    }
}

fn create_gateway(
    t: &mut Topology,
    gateway: Gateway,
    root: Trunk,
    now: u64,
    ch: &mut Changes,
) -> Result<(Item<Gateway>, Item<Trunk>), TopologyError> {
    gateway.validate()?;
    if t.gateways.contains_key(&gateway.name) {
        return Err(TopologyError::AlreadyExists {
            kind: Kind::Gateway,
            name: gateway.name,
        });
    }
    if t.trunks.contains_key(&gateway.name) {
        return Err(field_error(
            "name",
            format!(
                "a trunk named '{}' exists: the root trunk takes the gateway's name",
                gateway.name
            ),
        )
        .into());
    }
    // The gateway and its root trunk refer to each other: put the gateway in first, unchecked,
    // then let the trunk's checks run, then check the gateway.
    let meta = crate::model::Meta {
        revision: 1,
        created_unix_ms: now,
        updated_unix_ms: now,
    };
    let gw_item = Item {
        meta,
        value: gateway,
    };
    t.gateways
        .insert(gw_item.value.name.clone(), gw_item.clone());
    let root_item = t.create(root, now, ch).map_err(|e| match e {
        TopologyError::Invalid(f) => {
            TopologyError::Invalid(field_error(format!("root_trunk.{}", f.field), f.reason))
        }
        other => other,
    })?;
    gw_item.value.check_refs(t)?;
    let bytes = serde_json::to_vec(&gw_item).map_err(|e| TopologyError::Store(e.to_string()))?;
    ch.puts
        .push((Kind::Gateway, gw_item.value.name.clone(), bytes));
    Ok((gw_item, root_item))
}

fn delete_gateway(
    t: &mut Topology,
    name: &str,
    expected_revision: u64,
    ch: &mut Changes,
) -> Result<(), TopologyError> {
    let gw = t.get::<Gateway>(name)?;
    if expected_revision != 0 && expected_revision != gw.meta.revision {
        return Err(TopologyError::Conflict {
            kind: Kind::Gateway,
            name: name.into(),
            expected: expected_revision,
            actual: gw.meta.revision,
        });
    }
    let dependents = gw.value.dependents(t);
    if !dependents.is_empty() {
        return Err(TopologyError::InUse {
            kind: Kind::Gateway,
            name: name.into(),
            dependents,
        });
    }
    t.trunks.remove(name);
    ch.deletes.push((Kind::Trunk, name.into()));
    t.gateways.remove(name);
    ch.deletes.push((Kind::Gateway, name.into()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GatewayKind, Transport};
    use crate::topology::tests::{pool, trunk};

    fn registry(tag: &str) -> (Registry, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("mediator-registry-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Registry::open(&dir).expect("open"), dir)
    }

    fn gw(name: &str) -> Gateway {
        Gateway {
            name: name.into(),
            kind: GatewayKind::PstnGateway,
            site: "redmond".into(),
        }
    }

    #[test]
    fn gateway_comes_and_goes_with_its_root_trunk() {
        let (r, dir) = registry("gw");
        r.create(pool("pool1.contoso.com")).expect("pool");
        let root = trunk(
            "gw1.contoso.com",
            "gw1.contoso.com",
            5067,
            "pool1.contoso.com",
            5067,
        );
        let (g, t) = r
            .create_gateway(gw("gw1.contoso.com"), root.clone())
            .expect("gateway");
        assert_eq!((g.meta.revision, t.value.is_root()), (1, true));
        let e = r.delete::<Trunk>("gw1.contoso.com", 0).expect_err("root");
        assert!(e.to_string().contains("goes with the gateway"), "{e}");
        r.create(trunk(
            "gw1-5068",
            "gw1.contoso.com",
            5068,
            "pool1.contoso.com",
            5068,
        ))
        .expect("trunk");
        let e = r
            .delete::<Gateway>("gw1.contoso.com", 0)
            .expect_err("has trunks");
        assert!(matches!(e, TopologyError::InUse { .. }), "{e}");
        r.delete::<Trunk>("gw1-5068", 0).expect("delete trunk");
        r.delete::<Gateway>("gw1.contoso.com", 0)
            .expect("delete gateway");
        assert!(r.read(|t| t.trunks.is_empty() && t.gateways.is_empty()));
        // Reopen: the store agrees with what was served.
        let served = r.read(Clone::clone);
        drop(r);
        let r = Registry::open(&dir).expect("reopen");
        assert_eq!(r.read(Clone::clone), served);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_refused_gateway_leaves_nothing() {
        let (r, dir) = registry("refused");
        let root = trunk(
            "gw1.contoso.com",
            "gw1.contoso.com",
            5067,
            "nope.contoso.com",
            5067,
        );
        let e = r
            .create_gateway(gw("gw1.contoso.com"), root)
            .expect_err("no pool");
        assert!(e.to_string().starts_with("root_trunk.pool:"), "{e}");
        assert!(r.read(|t| t.gateways.is_empty() && t.trunks.is_empty()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn moves_rehome_and_are_recorded() {
        let (r, dir) = registry("move");
        r.create(pool("pool1.contoso.com")).expect("pool");
        r.create(pool("pool2.contoso.com")).expect("pool");
        let mut root = trunk(
            "gw1.contoso.com",
            "gw1.contoso.com",
            5067,
            "pool1.contoso.com",
            5067,
        );
        root.transport = Transport::Tls;
        r.create_gateway(gw("gw1.contoso.com"), root)
            .expect("gateway");
        r.create(trunk(
            "gw1-5068",
            "gw1.contoso.com",
            5068,
            "pool1.contoso.com",
            5068,
        ))
        .expect("trunk");
        let m = r
            .move_trunks(None, Some("pool1.contoso.com"), "pool2.contoso.com", None)
            .expect("move");
        assert_eq!((m.id, m.trunks.len()), (1, 2));
        assert!(r.read(|t| {
            t.trunks
                .values()
                .all(|x| x.value.pool == "pool2.contoso.com")
        }));
        let m2 = r
            .move_trunks(Some("gw1-5068"), None, "pool1.contoso.com", Some(6000))
            .expect("move one");
        assert_eq!((m2.id, m2.from_pool.as_str()), (2, "pool2.contoso.com"));
        assert!(
            r.move_trunks(Some("gw1-5068"), None, "pool1.contoso.com", None)
                .is_err(),
            "already there"
        );
        drop(r);
        let r = Registry::open(&dir).expect("reopen");
        assert_eq!(r.read(|t| t.moves.len()), 2);
        assert_eq!(r.read(|t| t.trunks["gw1-5068"].value.pool_port), 6000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
