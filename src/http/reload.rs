//! The one loop behind every file the listeners re-read while they run (the
//! TLS pair and client CA, the token listener's bearer token): every
//! `interval` until `shutdown`, the blocking `check` runs on the blocking
//! pool and its outcome goes to `report`. A tick that is late (a slow disk)
//! delays the next one instead of bunching them.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Spawns the loop: `check` off the async workers, `report` on them.
pub fn every<T, C, R>(
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    check: C,
    report: R,
) -> JoinHandle<()>
where
    T: Send + 'static,
    C: Fn() -> T + Clone + Send + Sync + 'static,
    R: Fn(T) + Send + 'static,
{
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let check = check.clone();
            if let Ok(outcome) = tokio::task::spawn_blocking(check).await {
                report(outcome);
            }
        }
    })
}
