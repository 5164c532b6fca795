//! The seam between session management and the kernel fast path.
//!
//! The userspace relay always runs (it owns the sockets and handles whatever the fast path passes
//! up); a [`Forwarder`] is what sessions are offloaded to. [`crate::xdp::XdpForwarder`] is the real
//! one, [`NoOffload`] stands in when XDP is off or unavailable, and [`FakeForwarder`] records what
//! it was told, for tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::abi::{StreamEntry, StreamKey, StreamStats};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("BPF map operation failed: {0}")]
    Map(String),
    #[error("XDP is not available")]
    Unavailable,
    #[error("a lock was poisoned")]
    Poisoned,
}

pub trait Forwarder: Send + Sync + 'static {
    /// Whether a stream arriving on local address `ingress` and leaving from local address
    /// `egress` can be forwarded by this path (or why not).
    fn can_offload(&self, ingress: IpAddr, egress: IpAddr) -> Result<(), &'static str>;
    /// How many streams (statistics slots) the fast path holds.
    fn capacity(&self) -> u32;
    fn install(&self, key: StreamKey, entry: StreamEntry) -> Result<(), ForwardError>;
    /// Removing an absent key is not an error.
    fn remove(&self, key: &StreamKey) -> Result<(), ForwardError>;
    fn reset_stats(&self, slot: u32) -> Result<(), ForwardError>;
    /// The per-CPU parts of one slot's statistics.
    fn read_stats(&self, slot: u32) -> Result<Vec<StreamStats>, ForwardError>;
    /// Every installed entry (to re-adopt or clean up after a restart).
    fn entries(&self) -> Result<Vec<(StreamKey, StreamEntry)>, ForwardError>;
}

/// No fast path: every stream stays in userspace, with this reason.
pub struct NoOffload {
    pub reason: &'static str,
    pub capacity: u32,
}

impl Forwarder for NoOffload {
    fn can_offload(&self, _: IpAddr, _: IpAddr) -> Result<(), &'static str> {
        Err(self.reason)
    }
    fn capacity(&self) -> u32 {
        self.capacity
    }
    fn install(&self, _: StreamKey, _: StreamEntry) -> Result<(), ForwardError> {
        Err(ForwardError::Unavailable)
    }
    fn remove(&self, _: &StreamKey) -> Result<(), ForwardError> {
        Ok(())
    }
    fn reset_stats(&self, _: u32) -> Result<(), ForwardError> {
        Ok(())
    }
    fn read_stats(&self, _: u32) -> Result<Vec<StreamStats>, ForwardError> {
        Ok(Vec::new())
    }
    fn entries(&self) -> Result<Vec<(StreamKey, StreamEntry)>, ForwardError> {
        Ok(Vec::new())
    }
}

/// An in-memory fast path for tests: accepts everything, forwards nothing.
#[derive(Default)]
pub struct FakeForwarder {
    pub entries: Mutex<HashMap<StreamKey, StreamEntry>>,
    pub stats: Mutex<HashMap<u32, Vec<StreamStats>>>,
}

impl Forwarder for FakeForwarder {
    fn can_offload(&self, _: IpAddr, _: IpAddr) -> Result<(), &'static str> {
        Ok(())
    }
    fn capacity(&self) -> u32 {
        1024
    }
    fn install(&self, key: StreamKey, entry: StreamEntry) -> Result<(), ForwardError> {
        self.entries
            .lock()
            .map_err(|_| ForwardError::Poisoned)?
            .insert(key, entry);
        Ok(())
    }
    fn remove(&self, key: &StreamKey) -> Result<(), ForwardError> {
        self.entries
            .lock()
            .map_err(|_| ForwardError::Poisoned)?
            .remove(key);
        Ok(())
    }
    fn reset_stats(&self, slot: u32) -> Result<(), ForwardError> {
        self.stats
            .lock()
            .map_err(|_| ForwardError::Poisoned)?
            .remove(&slot);
        Ok(())
    }
    fn read_stats(&self, slot: u32) -> Result<Vec<StreamStats>, ForwardError> {
        Ok(self
            .stats
            .lock()
            .map_err(|_| ForwardError::Poisoned)?
            .get(&slot)
            .cloned()
            .unwrap_or_default())
    }
    fn entries(&self) -> Result<Vec<(StreamKey, StreamEntry)>, ForwardError> {
        Ok(self
            .entries
            .lock()
            .map_err(|_| ForwardError::Poisoned)?
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect())
    }
}
