//! Retry delays: exponential backoff with full jitter.
//!
//! After the `n`-th consecutive failure a policy waits a random time in
//! `[cap/2, cap]`, where `cap = min(BASE * 2^(n-1), MAX)`. The lower half is
//! kept so a retry is never (almost) immediate, the upper half is randomised
//! so many policies failing together (an API server outage) do not retry in
//! lock step.

use std::time::Duration;

/// The delay cap after the first failure.
pub const BASE: Duration = Duration::from_secs(1);
/// The longest delay, however many failures came before.
pub const MAX: Duration = Duration::from_secs(60);

/// The upper bound of the delay after `failures` consecutive failures
/// (`failures >= 1`; 0 is treated as 1).
pub fn cap(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1u32 << doublings).min(MAX)
}

/// The delay after `failures` consecutive failures, with `unit` in `[0, 1)`
/// choosing where in `[cap/2, cap]` it falls (pass a random number).
pub fn delay(failures: u32, unit: f64) -> Duration {
    let cap = cap(failures);
    let half = cap / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// [`delay`] with a fresh random position.
pub fn jittered(failures: u32) -> Duration {
    delay(failures, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_doubles_from_one_second_up_to_a_minute() {
        let caps: Vec<u64> = (1..=9).map(|n| cap(n).as_secs()).collect();
        assert_eq!(caps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(cap(0), BASE);
        assert_eq!(cap(u32::MAX), MAX);
    }

    #[test]
    fn each_delay_lies_in_the_upper_half_of_its_cap() {
        for n in 1..12 {
            let cap = cap(n);
            assert_eq!(delay(n, 0.0), cap / 2, "{n}");
            assert_eq!(delay(n, 1.0), cap, "{n}");
            assert_eq!(delay(n, 0.5), cap / 2 + cap / 4, "{n}");
            for _ in 0..50 {
                let d = jittered(n);
                assert!(d >= cap / 2 && d <= cap, "{n}: {d:?}");
            }
        }
    }

    #[test]
    fn failing_policies_do_not_retry_in_lock_step() {
        let delays: std::collections::BTreeSet<Duration> = (0..20).map(|_| jittered(5)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
