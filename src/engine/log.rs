//! The log lines of the reporters that report through the log (standalone
//! and the signer): the same events read the same in both.

use std::fmt;

use tracing::{error, info, warn};

use super::{Note, Problem};
use crate::http::PolicyRef;

/// Logs a loaded or adopted set; other notes are logged by the engine or
/// mean nothing without an API.
pub fn note(policy: &PolicyRef, note: &Note<'_>) {
    match note {
        Note::Loaded { keys, version } => {
            info!(%policy, keys, %version, "loaded the stored key set");
        }
        Note::Adopting { keys } => {
            info!(%policy, keys, "adopting a JWK Set without lifecycle records: the first key becomes Active, the others Retired");
        }
        Note::Adopted { .. } | Note::Recreated | Note::Restored { .. } | Note::Lifecycle(_) => {}
    }
}

/// A pass ended well, with `problem` (a deferred rotation) or none: logs a
/// change from what `shown` says, once, and remembers it.
pub fn healthy(policy: &PolicyRef, shown: &mut Option<Problem>, problem: &Option<Problem>) {
    if problem == shown {
        return;
    }
    match problem {
        Some(p) => warn!(%policy, reason = %p.reason, "{}", p.message),
        None if shown.is_some() => info!(%policy, "policy recovered"),
        None => {}
    }
    shown.clone_from(problem);
}

/// A pass stopped at `problem`: logged once (with `detail` after it) while
/// it stays the same.
pub fn degraded(policy: &PolicyRef, shown: &mut Option<Problem>, problem: &Problem, detail: &str) {
    if shown.as_ref() != Some(problem) {
        error!(%policy, reason = %problem.reason, "{}{detail}", problem.message);
        *shown = Some(problem.clone());
    }
}

/// A failure that is retried without being shown.
pub fn retrying(policy: &PolicyRef, what: &dyn fmt::Display, conflict: bool) {
    if conflict {
        warn!(%policy, "{what}; reloading");
    } else {
        warn!(%policy, "{what}; retrying");
    }
}
