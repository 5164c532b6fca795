//! The durable store: an embedded redb database in the data directory. One table per resource
//! kind (name → JSON of `Item<T>`), one for trunk moves, one for metadata (schema version).
//!
//! Every write is one redb transaction committed with full durability before the RPC answers, so
//! `kill -9` at any moment leaves the last committed state, never a torn one.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use mediator_topology::model::TrunkMove;
use mediator_topology::topology::{Changes, Item, Kind, Topology};

/// The schema this build writes. Older stores are migrated on open; newer ones are refused.
pub(crate) const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const MOVES: TableDefinition<u64, &[u8]> = TableDefinition::new("trunk_moves");

fn table(kind: Kind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(match kind {
        Kind::Pool => "pools",
        Kind::Gateway => "gateways",
        Kind::Trunk => "trunks",
        Kind::TrunkConfiguration => "trunk_configurations",
        Kind::PstnUsage => "pstn_usages",
        Kind::VoiceRoute => "voice_routes",
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error(
        "{path} was written by a newer mediator-control (schema {found}, this build knows {SCHEMA_VERSION})"
    )]
    TooNew { path: PathBuf, found: u64 },
    #[error("stored {kind} '{name}' is unreadable: {message}")]
    Corrupt {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("the stored topology in {path} is inconsistent (edited by hand, or a bug): {}", .problems.join("; "))]
    Inconsistent {
        path: PathBuf,
        problems: Vec<String>,
    },
}

pub(crate) struct Store {
    db: Database,
    path: PathBuf,
}

/// Migrations from version N to N+1, in order (index 0 migrates 1 -> 2). None yet.
type Migration = fn(&redb::WriteTransaction) -> Result<(), redb::Error>;
const MIGRATIONS: &[Migration] = &[];

impl Store {
    /// Opens (or creates) the store in `dir`, migrating it to [`SCHEMA_VERSION`], and loads the
    /// topology. A new store starts with the global trunk configuration at Lync's defaults.
    pub(crate) fn open(dir: &Path, now: u64) -> Result<(Self, Topology), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.into(),
            source,
        })?;
        let path = dir.join("topology.redb");
        let db_err = |e: &dyn std::fmt::Display| StoreError::Db {
            path: path.clone(),
            message: e.to_string(),
        };
        let db = Database::create(&path).map_err(|e| db_err(&e))?;
        let store = Store {
            db,
            path: path.clone(),
        };
        let version = store.schema_version().map_err(|e| db_err(&e))?;
        match version {
            None => {
                let (topology, changes) = Topology::initial(now);
                store
                    .write(&changes, Some(SCHEMA_VERSION))
                    .map_err(|e| db_err(&e))?;
                tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "created a new topology store");
                return Ok((store, topology));
            }
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew { path, found: v }),
            Some(v) if v < SCHEMA_VERSION => store.migrate(v).map_err(|e| db_err(&e))?,
            Some(_) => {}
        }
        let topology = store.load()?;
        let problems = topology.load_errors();
        if !problems.is_empty() {
            return Err(StoreError::Inconsistent { path, problems });
        }
        Ok((store, topology))
    }

    fn schema_version(&self) -> Result<Option<u64>, redb::Error> {
        let txn = self.db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(meta.get("schema_version")?.map(|v| v.value()))
    }

    fn migrate(&self, from: u64) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip((from - 1) as usize) {
            m(&txn)?;
            tracing::info!(to = i as u64 + 2, "migrated the topology store");
        }
        txn.open_table(META)?
            .insert("schema_version", SCHEMA_VERSION)?;
        txn.commit()?;
        Ok(())
    }

    fn load(&self) -> Result<Topology, StoreError> {
        let db_err = |e: &dyn std::fmt::Display| StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let txn = self.db.begin_read().map_err(|e| db_err(&e))?;
        let mut t = Topology::default();
        fn read<T: serde::de::DeserializeOwned>(
            txn: &redb::ReadTransaction,
            kind: Kind,
            out: &mut std::collections::BTreeMap<String, Item<T>>,
        ) -> Result<(), StoreError> {
            let table = match txn.open_table(table(kind)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        kind: kind.name(),
                        name: String::new(),
                        message: e.to_string(),
                    });
                }
            };
            let iter = table.iter().map_err(|e| StoreError::Corrupt {
                kind: kind.name(),
                name: String::new(),
                message: e.to_string(),
            })?;
            for row in iter {
                let (k, v) = row.map_err(|e| StoreError::Corrupt {
                    kind: kind.name(),
                    name: String::new(),
                    message: e.to_string(),
                })?;
                let name = k.value().to_string();
                let item: Item<T> =
                    serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                        kind: kind.name(),
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                out.insert(name, item);
            }
            Ok(())
        }
        read(&txn, Kind::Pool, &mut t.pools)?;
        read(&txn, Kind::Gateway, &mut t.gateways)?;
        read(&txn, Kind::Trunk, &mut t.trunks)?;
        read(&txn, Kind::TrunkConfiguration, &mut t.configs)?;
        if let Some(g) = t.configs.get_mut("global") {
            let filled = g
                .value
                .settings
                .fill_from(&mediator_topology::model::Settings::lync_defaults());
            if !filled.is_empty() {
                tracing::info!(settings = %filled.join(", "), "settings new in this build take their defaults at global scope");
            }
        }
        read(&txn, Kind::PstnUsage, &mut t.usages)?;
        read(&txn, Kind::VoiceRoute, &mut t.routes)?;
        let moves = match txn.open_table(MOVES) {
            Ok(m) => Some(m),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(db_err(&e)),
        };
        if let Some(moves) = moves {
            for row in moves.iter().map_err(|e| db_err(&e))? {
                let (_, v) = row.map_err(|e| db_err(&e))?;
                let m: TrunkMove =
                    serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                        kind: "trunk_move",
                        name: String::new(),
                        message: e.to_string(),
                    })?;
                t.moves.push(m);
            }
        }
        Ok(t)
    }

    /// Makes `changes` durable in one transaction.
    pub(crate) fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        self.write(changes, None).map_err(|e| StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn write(&self, changes: &Changes, schema: Option<u64>) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            // Open every table so that a fresh store has them all.
            for kind in Kind::ALL {
                txn.open_table(table(kind))?;
            }
            let mut moves = txn.open_table(MOVES)?;
            let mut meta = txn.open_table(META)?;
            if let Some(v) = schema {
                meta.insert("schema_version", v)?;
            }
            for (kind, name, bytes) in &changes.puts {
                txn.open_table(table(*kind))?
                    .insert(name.as_str(), bytes.as_slice())?;
            }
            for (kind, name) in &changes.deletes {
                txn.open_table(table(*kind))?.remove(name.as_str())?;
            }
            for m in &changes.moves {
                let bytes =
                    serde_json::to_vec(m).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                moves.insert(m.id, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediator_topology::testing::sample;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mediator-store-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn new_store_has_global_defaults_and_survives_reopen() {
        let dir = tmp("new");
        let (store, t) = Store::open(&dir, 7).expect("open");
        assert_eq!(t.configs.len(), 1);
        let sample = sample();
        let mut ch = Changes::default();
        for (kind, map) in [(Kind::Pool, &sample.pools)] {
            for (name, item) in map {
                ch.puts
                    .push((kind, name.clone(), serde_json::to_vec(item).expect("json")));
            }
        }
        store.apply(&ch).expect("apply");
        drop(store);
        let (_, t2) = Store::open(&dir, 8).expect("reopen");
        assert_eq!(t2.pools, sample.pools);
        assert_eq!(t2.configs, t.configs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_inconsistent_store_is_not_served() {
        let dir = tmp("inconsistent");
        let (store, _) = Store::open(&dir, 1).expect("open");
        // A trunk whose gateway and pool do not exist, as a hand edit could leave it.
        let t = mediator_topology::testing::trunk(
            "t1",
            "gw9.contoso.com",
            5060,
            "nope.contoso.com",
            5060,
        );
        let item = Item {
            meta: mediator_topology::model::Meta::default(),
            value: t,
        };
        let ch = Changes {
            puts: vec![(
                Kind::Trunk,
                "t1".into(),
                serde_json::to_vec(&item).expect("json"),
            )],
            ..Default::default()
        };
        store.apply(&ch).expect("apply");
        drop(store);
        let e = Store::open(&dir, 2).err().expect("refused");
        assert!(
            e.to_string()
                .contains("trunk 't1': gateway: gateway 'gw9.contoso.com' does not exist"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn settings_new_in_this_build_take_their_defaults_in_an_older_store() {
        let dir = tmp("older-settings");
        let (store, t) = Store::open(&dir, 1).expect("open");
        // The global configuration as a build before OPTIONS probing wrote it.
        let mut global = t.configs.get("global").expect("global").clone();
        global.value.settings.options_interval_secs = None;
        global.value.settings.options_failures = None;
        global.value.settings.follow_redirects = None;
        global.value.settings.large_requests_over_tcp = None;
        global.value.settings.ring_limit_secs = None;
        let ch = Changes {
            puts: vec![(
                Kind::TrunkConfiguration,
                "global".into(),
                serde_json::to_vec(&global).expect("json"),
            )],
            ..Default::default()
        };
        store.apply(&ch).expect("apply");
        drop(store);
        let (_, t) = Store::open(&dir, 2).expect("an older store opens");
        let s = &t.configs.get("global").expect("global").value.settings;
        assert_eq!(
            (
                s.options_interval_secs,
                s.options_failures,
                s.follow_redirects,
                s.large_requests_over_tcp,
                s.ring_limit_secs
            ),
            (Some(60), Some(5), Some(false), Some(false), Some(240))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tmp("newer");
        let (store, _) = Store::open(&dir, 1).expect("open");
        store
            .write(&Changes::default(), Some(SCHEMA_VERSION + 1))
            .expect("bump");
        drop(store);
        let e = Store::open(&dir, 1).err().expect("refused");
        assert!(e.to_string().contains("newer mediator-control"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
