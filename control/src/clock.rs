//! The daemon's one reading of the clocks. The sans-IO crates read none: the engine is handed
//! [`Now`] with every input and the topology the write's time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mediator_b2bua::Now;

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Both clocks as they read now, for the engine.
pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix_ms: unix_ms(),
    }
}
