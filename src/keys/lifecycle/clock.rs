//! Clock steps: the planner's [`Now`] carries the wall-clock jumps a
//! [`ClockWatch`] saw, so a deadline computed on an older clock is read on
//! the current one without being shortened.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::after;

/// A step of the wall clock that a monotonic clock did not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockJump {
    /// Wall time (on the new clock) when the step was noticed.
    pub seen_at: Timestamp,
    /// How far the wall clock moved beyond the time that really passed:
    /// positive for a forward jump, negative for a backward step.
    pub by: SignedDuration,
}

/// The planner's "now": the wall clock, and the clock steps seen while
/// this process ran (a plain [`Timestamp`] converts into one with none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// The wall clock.
    pub wall: Timestamp,
    /// Steps seen, oldest first.
    pub jumps: Vec<ClockJump>,
}

impl From<Timestamp> for Now {
    fn from(wall: Timestamp) -> Self {
        Now {
            wall,
            jumps: Vec::new(),
        }
    }
}

impl Now {
    /// How far the clock jumped forward since `t`, a time read on the clock
    /// in force then (backward steps only make retention longer, so they are
    /// not subtracted).
    pub fn forward_jumps_since(&self, t: Timestamp) -> Duration {
        self.jumps
            .iter()
            .filter(|j| j.seen_at > t && j.by.is_positive())
            .map(|j| j.by.unsigned_abs())
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// A deadline `due` computed at `computed_at`, read on the current clock:
    /// later by the forward jumps seen since `computed_at`, so a jump never
    /// shortens a wait the contract requires (retention, publication ahead
    /// of signing). Jumps below the [`ClockWatch`] threshold are not seen;
    /// the threshold is far below any `clockSkew` that absorbs them.
    pub(super) fn on_current_clock(&self, due: Timestamp, computed_at: Timestamp) -> Timestamp {
        after(due, self.forward_jumps_since(computed_at))
    }
}

/// Notices steps of the wall clock by comparing it with a monotonic clock
/// at every reading. The caller keeps one per process, logs each jump it
/// returns, and passes [`ClockWatch::now`] to [`plan`]. Pure: both clocks
/// are read by the caller.
#[derive(Clone, Debug)]
pub struct ClockWatch {
    threshold: Duration,
    last: Option<(Timestamp, std::time::Instant)>,
    jumps: Vec<ClockJump>,
}

/// Steps a [`ClockWatch`] remembers; the oldest are forgotten first (a
/// process that sees this many steps has a broken clock, which the log says).
pub const MAX_CLOCK_JUMPS: usize = 32;

impl ClockWatch {
    /// A watch reporting steps larger than `threshold`.
    pub fn new(threshold: Duration) -> Self {
        ClockWatch {
            threshold,
            last: None,
            jumps: Vec::new(),
        }
    }

    /// Records a reading of both clocks; returns the step since the previous
    /// reading when it exceeds the threshold.
    pub fn observe(&mut self, wall: Timestamp, mono: std::time::Instant) -> Option<ClockJump> {
        let previous = self.last.replace((wall, mono));
        let (last_wall, last_mono) = previous?;
        let elapsed = SignedDuration::try_from(mono.saturating_duration_since(last_mono)).ok()?;
        let moved = wall.duration_since(last_wall);
        let by = moved.checked_sub(elapsed)?;
        if by.unsigned_abs() <= self.threshold {
            return None;
        }
        let jump = ClockJump { seen_at: wall, by };
        if self.jumps.len() == MAX_CLOCK_JUMPS {
            self.jumps.remove(0);
        }
        self.jumps.push(jump);
        Some(jump)
    }

    /// The planner's now at wall time `wall`, with the steps seen so far.
    pub fn now(&self, wall: Timestamp) -> Now {
        Now {
            wall,
            jumps: self.jumps.clone(),
        }
    }
}
