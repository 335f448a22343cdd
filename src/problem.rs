//! Why a policy needs attention ([`Problem`]: its `Degraded` condition, its
//! entry in `/policies`) and what the engine needs to know of a failed store
//! or reporter operation ([`Failure`]). A leaf: the engine, the stores and
//! the HTTP layer all use it, and it uses none of them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a policy needs attention (its `Degraded` condition, its entry in
/// `/policies`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Machine-readable reason (a condition reason, `CamelCase`).
    pub reason: String,
    /// What is wrong, for a person. Never holds key material.
    pub message: String,
}

// === impl Problem ===

impl Problem {
    /// A problem from its parts.
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What the engine needs to know about a failed store or reporter operation.
pub trait Failure: fmt::Display {
    /// A short label for the `reconcile_errors_total` metric.
    fn kind(&self) -> &'static str;
    /// Whether someone else wrote first (re-read, plan again, retry).
    fn is_conflict(&self) -> bool {
        false
    }
    /// The problem to show as `Degraded`, or `None` when the failure is only
    /// logged and retried.
    fn problem(&self) -> Option<Problem>;
    /// A fixed re-check interval instead of backoff, for stored state that
    /// waits for a person (unreadable, not ours).
    fn recheck(&self) -> Option<Duration> {
        None
    }
}

/// Reporting cannot fail (standalone publishes into memory).
impl Failure for std::convert::Infallible {
    fn kind(&self) -> &'static str {
        match *self {}
    }

    fn problem(&self) -> Option<Problem> {
        match *self {}
    }
}
