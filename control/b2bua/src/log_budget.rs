//! A budget for log lines that network input can provoke (a request from a stranger, a
//! malformed message): at most [`PER_WINDOW`] lines per [`WINDOW`] for each kind, the rest
//! counted and reported by the next line written, so a flood writes a bounded log. Sans-IO: the
//! caller gives the time.

use std::time::{Duration, Instant};

/// Lines of one kind written per window at most.
pub const PER_WINDOW: u32 = 10;
/// The window over which [`PER_WINDOW`] lines may be written.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The budget of one kind of line.
#[derive(Debug, Default)]
pub struct LogBudget {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Whether a line may be written at `now`: `Some(n)` with how many were left out since the
    /// last line written (for that line to say), `None` when this one is left out.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW)
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_bounded_log_and_says_what_it_left_out() {
        let mut b = LogBudget::default();
        let t0 = Instant::now();
        let written = (0..10_000)
            .filter(|i| b.allow(t0 + Duration::from_micros(*i)).is_some())
            .count();
        assert_eq!(written, PER_WINDOW as usize);
        assert_eq!(
            b.allow(t0 + WINDOW),
            Some(10_000 - u64::from(PER_WINDOW)),
            "the first line of the next window counts the lines left out"
        );
        assert_eq!(b.allow(t0 + WINDOW), Some(0));
    }
}
