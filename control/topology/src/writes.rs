//! The write operations that carry kind rules or span resources: deleting with the rules of a
//! root trunk, the global configuration and a gateway; creating a gateway with its root trunk;
//! moving trunks to another pool. Each edits the topology it is called on and records the store
//! changes; the daemon calls them on a copy and serves the copy only once the store has it.

use crate::model::{Gateway, Meta, Pool, Trunk, TrunkMove, field_error};
use crate::topology::{Changes, Item, Kind, Resource, Topology, TopologyError};

impl Topology {
    /// Deletes a resource; the kind-specific rules (root trunk, global configuration, gateway
    /// with its root trunk) apply.
    pub fn delete_checked<R: Resource>(
        &mut self,
        name: &str,
        expected_revision: u64,
        ch: &mut Changes,
    ) -> Result<(), TopologyError> {
        if R::KIND == Kind::Trunk && self.get::<Trunk>(name)?.value.is_root() {
            return Err(TopologyError::Precondition {
                what: format!(
                    "trunk '{name}' is the root trunk of gateway '{name}': it goes with the gateway"
                ),
            });
        }
        if R::KIND == Kind::TrunkConfiguration && name == "global" {
            return Err(TopologyError::Precondition {
                what:
                    "the global trunk configuration cannot be deleted; change its settings instead"
                        .into(),
            });
        }
        if R::KIND == Kind::Gateway {
            return delete_gateway(self, name, expected_revision, ch);
        }
        self.delete::<R>(name, expected_revision, ch)
    }

    /// Creates a gateway together with its root trunk.
    pub fn create_gateway(
        &mut self,
        gateway: Gateway,
        root: Trunk,
        now: u64,
        ch: &mut Changes,
    ) -> Result<(Item<Gateway>, Item<Trunk>), TopologyError> {
        create_gateway(self, gateway, root, now, ch)
    }

    /// Re-homes `trunk`, or every trunk of `from_pool`, to `to_pool` (optionally on a new pool
    /// port) and records the move. Calls in progress keep the pool they were set up on.
    pub fn move_trunks(
        &mut self,
        trunk: Option<&str>,
        from_pool: Option<&str>,
        to_pool: &str,
        pool_port: Option<u16>,
        now: u64,
        ch: &mut Changes,
    ) -> Result<TrunkMove, TopologyError> {
        let draining = self
            .get::<Pool>(to_pool)
            .map_err(|_| {
                TopologyError::Invalid(field_error(
                    "to_pool",
                    format!("pool '{to_pool}' does not exist"),
                ))
            })?
            .value
            .draining;
        let (from, names): (String, Vec<String>) = match (trunk, from_pool) {
            (Some(name), None) => {
                let tr = self.get::<Trunk>(name)?;
                (tr.value.pool.clone(), vec![name.to_string()])
            }
            (None, Some(pool)) => {
                self.get::<Pool>(pool)?;
                let names: Vec<String> = self
                    .trunks
                    .values()
                    .filter(|x| x.value.pool == pool)
                    .map(|x| x.value.name.clone())
                    .collect();
                if names.is_empty() {
                    return Err(TopologyError::Precondition {
                        what: format!("pool '{pool}' has no trunks to move"),
                    });
                }
                (pool.to_string(), names)
            }
            _ => {
                return Err(field_error(
                    "trunk",
                    "name either a trunk or from_pool, not both and not neither",
                )
                .into());
            }
        };
        if from == to_pool {
            return Err(field_error(
                "to_pool",
                format!("the trunks are already on pool '{to_pool}'"),
            )
            .into());
        }
        if draining {
            return Err(TopologyError::Precondition {
                what: format!(
                    "pool '{to_pool}' is draining (it refuses new calls); resume it first"
                ),
            });
        }
        for name in &names {
            self.update::<Trunk>(name, 0, now, ch, |tr| {
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
        if !self.trunks.values().any(|t| t.value.pool == from) {
            // No trunk is left on it: the old pool drains, so its Front End fails over at once
            // (503 with Retry-After) while its calls in progress end where they are.
            self.update::<Pool>(&from, 0, now, ch, |p| {
                p.draining = true;
                Ok(())
            })?;
        }
        let id = self.moves.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        let m = TrunkMove {
            id,
            unix_ms: now,
            from_pool: from,
            to_pool: to_pool.into(),
            trunks: names,
        };
        self.moves.push(m.clone());
        ch.moves.push(m.clone());
        tracing::info!(id, from = %m.from_pool, to = %m.to_pool, trunks = ?m.trunks, "trunks moved");
        Ok(m)
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
    let meta = Meta {
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
