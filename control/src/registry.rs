//! The topology as the daemon serves it: **snapshots** for readers, and writes that validate on
//! a copy, become durable in one store transaction, and only then replace the served snapshot. A
//! write that fails at any step leaves both the store and the served topology as they were.
//!
//! Writers serialize among themselves only. Readers — the SIP runtime on every message and
//! timer, the API's reads — take the current snapshot (an `Arc` copied under a lock held for the
//! copy alone) and never wait for a write's validation or its fsync.

use std::sync::{Arc, Mutex, RwLock};

use crate::clock::unix_ms;
use crate::store::{Store, StoreError};
use mediator_topology::document::Change;
use mediator_topology::model::{FieldError, Gateway, Trunk, TrunkMove};
use mediator_topology::topology::{Changes, Item, Resource, Topology, TopologyError};

pub struct Registry {
    store: Store,
    /// Held for the whole of a write: one writer at a time.
    writer: Mutex<()>,
    /// The served topology. Its lock is held only to copy or replace the `Arc`.
    served: RwLock<Arc<Topology>>,
}

impl Registry {
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let (store, topology) = Store::open(dir, unix_ms())?;
        Ok(Self {
            store,
            writer: Mutex::new(()),
            served: RwLock::new(Arc::new(topology)),
        })
    }

    /// The topology as served now. It does not change under the holder; a later write serves a
    /// new snapshot.
    pub fn snapshot(&self) -> Arc<Topology> {
        match self.served.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Runs `f` on the current snapshot.
    pub fn read<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.snapshot())
    }

    /// The write protocol: `f` edits a copy of the current snapshot and records its changes; the
    /// store makes them durable in one transaction; then the copy is served.
    ///
    /// Called from an async worker (the gRPC handlers), it first tells tokio that this worker
    /// will block (`block_in_place`), so the worker's other tasks — the SIP runtime among them —
    /// move to another thread while this write waits for the writer lock, validates and fsyncs.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Topology, &mut Changes, u64) -> Result<R, TopologyError>,
    ) -> Result<R, TopologyError> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.write_blocking(f))
        } else {
            self.write_blocking(f)
        }
    }

    fn write_blocking<R>(
        &self,
        f: impl FnOnce(&mut Topology, &mut Changes, u64) -> Result<R, TopologyError>,
    ) -> Result<R, TopologyError> {
        let _writer = match self.writer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut copy = Topology::clone(&self.snapshot());
        let mut changes = Changes::default();
        let out = f(&mut copy, &mut changes, unix_ms())?;
        self.store
            .apply(&changes)
            .map_err(|e| TopologyError::Store(e.to_string()))?;
        let next = Arc::new(copy);
        match self.served.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(out)
    }

    pub fn create<R: Resource>(&self, value: R) -> Result<Item<R>, TopologyError> {
        self.write(|t, ch, now| t.create(value, now, ch))
    }

    pub fn update<R: Resource>(
        &self,
        name: &str,
        expected_revision: u64,
        edit: impl FnOnce(&mut R) -> Result<(), FieldError>,
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
        self.write(|t, ch, _| t.delete_checked::<R>(name, expected_revision, ch))
    }

    /// Creates a gateway together with its root trunk.
    pub fn create_gateway(
        &self,
        gateway: Gateway,
        root: Trunk,
    ) -> Result<(Item<Gateway>, Item<Trunk>), TopologyError> {
        self.write(|t, ch, now| t.create_gateway(gateway, root, now, ch))
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
        self.write(|t, ch, now| t.move_trunks(trunk, from_pool, to_pool, pool_port, now, ch))
    }

    /// The topology document of the served topology.
    pub fn export(&self) -> Result<String, TopologyError> {
        self.read(Topology::export)
    }

    /// Replaces the topology with the document, all or nothing. Returns the changes; with
    /// `dry_run` nothing is applied.
    pub fn import(&self, text: &str, dry_run: bool) -> Result<Vec<Change>, TopologyError> {
        self.write(|t, ch, now| t.import(text, dry_run, now, ch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediator_topology::model::{GatewayKind, Pool, Transport};
    use mediator_topology::testing::{pool, trunk};

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
    fn readers_get_the_served_snapshot_while_a_write_is_in_progress() {
        use std::sync::mpsc;
        use std::time::Duration;

        let (r, dir) = registry("snapshot");
        let r = Arc::new(r);
        let before = r.snapshot();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let writer = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                r.write(|t, ch, now| {
                    let out = t.create(pool("pool1.contoso.com"), now, ch);
                    // Hold the write open (as a slow validation or fsync would).
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv();
                    out
                })
            })
        };
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the write started");
        // A reader in another thread (as the SIP runtime is) is not held up by the write.
        let (read_tx, read_rx) = mpsc::channel();
        {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let _ = read_tx.send(r.snapshot());
            });
        }
        let during = read_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a reader is not blocked by a write in progress");
        assert!(
            Arc::ptr_eq(&before, &during),
            "the served snapshot until the write commits"
        );
        assert!(during.pools.is_empty());
        release_tx.send(()).expect("release the writer");
        writer
            .join()
            .expect("writer thread")
            .expect("the write commits");
        assert_eq!(r.snapshot().pools.len(), 1, "served after the commit");
        assert!(
            before.pools.is_empty(),
            "a snapshot does not change under its holder"
        );
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two writes held open at once on a two-worker runtime (as the daemon runs) still leave a
    /// worker for the SIP runtime: without `block_in_place` both workers would be stuck.
    #[test]
    fn concurrent_writes_do_not_take_every_async_worker() {
        use std::sync::mpsc;
        use std::time::Duration;

        let (r, dir) = registry("two-writers");
        let r = Arc::new(r);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut writers = Vec::new();
        for n in 0..2 {
            let (r, entered_tx, release_rx) =
                (Arc::clone(&r), entered_tx.clone(), release_rx.clone());
            writers.push(rt.spawn(async move {
                r.write(|t, ch, now| {
                    let out = t.create(pool(&format!("pool{n}.contoso.com")), now, ch);
                    let _ = entered_tx.send(());
                    // Held until released (the first writer holds the lock; the second waits).
                    let _ = release_rx
                        .lock()
                        .map(|rx| rx.recv_timeout(Duration::from_secs(20)));
                    out
                })
            }));
        }
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a write is in progress");
        // The "SIP runtime": a task that needs a worker to run at all.
        let sip = rt.spawn(async { tokio::time::sleep(Duration::from_millis(1)).await });
        let ran = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sip).await });
        let _ = release_tx.send(());
        let _ = release_tx.send(());
        for w in writers {
            rt.block_on(w).expect("writer task").expect("write");
        }
        assert!(
            ran.is_ok(),
            "another task ran while two writes were held open"
        );
        assert_eq!(r.snapshot().pools.len(), 2);
        drop(rt);
        drop(r);
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
        assert!(
            r.read(|t| t.pools["pool1.contoso.com"].value.draining),
            "the pool every trunk left drains"
        );
        let refused = r
            .move_trunks(Some("gw1-5068"), None, "pool1.contoso.com", Some(6000))
            .expect_err("onto a draining pool");
        assert!(refused.to_string().contains("draining"), "{refused}");
        r.update::<Pool>("pool1.contoso.com", 0, |p| {
            p.draining = false;
            Ok(())
        })
        .expect("resume");
        let m2 = r
            .move_trunks(Some("gw1-5068"), None, "pool1.contoso.com", Some(6000))
            .expect("move one");
        assert!(
            !r.read(|t| t.pools["pool2.contoso.com"].value.draining),
            "a pool that keeps trunks does not drain"
        );
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
