//! The wall clock the lifecycle planner runs on, watched for steps.
//!
//! Every reconcile reads the time through [`now`]: it reads the wall clock
//! and a monotonic clock together, and a process-wide
//! [`ClockWatch`](crate::keys::lifecycle::ClockWatch) notices when the wall
//! clock moved by more than [`JUMP_THRESHOLD`] beyond the time that really
//! passed (NTP stepping a wrong clock, a VM resumed, someone running `date`).
//! Each step is logged once, at warn level, and passed on to the planner,
//! which reads deadlines computed before a forward jump as shifted by it, so
//! no key is pruned, or activated, early in real time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::keys::lifecycle::{ClockWatch, Now};

/// Steps smaller than this are noise (scheduling delay between the two
/// readings, slewing); far below any `clockSkew` worth setting.
pub const JUMP_THRESHOLD: Duration = Duration::from_secs(2);

static WATCH: Mutex<Option<ClockWatch>> = Mutex::new(None);

/// The planner's "now": the wall clock, with the steps seen so far.
pub fn now() -> Now {
    // Both clocks are read under the lock, so concurrent reconciles record
    // their readings in order.
    let mut guard = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let watch = guard.get_or_insert_with(|| ClockWatch::new(JUMP_THRESHOLD));
    let wall = Timestamp::now();
    if let Some(jump) = watch.observe(wall, Instant::now()) {
        tracing::warn!(
            by = %jump.by,
            now = %wall,
            "the wall clock stepped beyond the time that passed; retention and publication deadlines computed before the step are read as shifted by it"
        );
    }
    watch.now(wall)
}
