//! The log lines of the reporters that report through the log (standalone
//! and the signer): the same events read the same in both.

use std::fmt;

use tracing::{error, info, warn};

use super::{Note, Problem};
use crate::http::PolicyRef;

/// Logs a loaded, adopted, restored or recreated set (the last two at WARN:
/// someone deleted or emptied the stored set); lifecycle steps are logged
/// by the engine.
pub fn note(policy: &PolicyRef, note: &Note<'_>) {
    match note {
        Note::Loaded { keys, version } => {
            info!(%policy, keys, %version, "loaded the stored key set");
        }
        Note::Adopting { keys } => {
            info!(%policy, keys, "adopting a JWK Set without lifecycle records: the first key becomes Active, the others Retired");
        }
        Note::Adopted { keys } => {
            info!(%policy, keys, "the adopted key set was written back with lifecycle records");
        }
        Note::Restored { keys } => {
            warn!(%policy, keys, reason = RESTORED, "{}", restored_message(*keys));
        }
        Note::Recreated => {
            warn!(%policy, reason = RECREATED, "{RECREATED_MESSAGE}");
        }
        // The publish step logs a repair itself; copies are shown, not logged.
        Note::Lifecycle(_) | Note::CopyRepaired { .. } | Note::Copies(_) => {}
    }
}

/// The reason of a lost key set written back from memory.
pub const RESTORED: &str = "KeySetRestored";
/// The reason of a lost key set replaced by a fresh one.
pub const RECREATED: &str = "KeySetRecreated";
const RECREATED_MESSAGE: &str = "the stored key set was deleted or emptied and this process held no copy of it: a fresh key set was generated (tokens signed by the old keys no longer verify)";

/// What a restored set is reported with (log line, `/policies` warning).
pub fn restored_message(keys: usize) -> String {
    format!(
        "the stored key set was deleted or emptied; the set this process held ({keys} key(s)) was written back: the same keys keep signing and verifying"
    )
}

/// Logs `note` ([`note`]) and keeps the warning it carries ([`warning`]) in
/// `kept`: standalone and the signer show it in `/policies` until they
/// restart, where Kubernetes raises a Warning Event.
pub fn note_and_keep_warning(policy: &PolicyRef, n: &Note<'_>, kept: &mut Option<Problem>) {
    note(policy, n);
    if let Some(w) = warning(n) {
        *kept = Some(w);
    }
}

/// The warning a reporter without Events keeps showing (in `/policies`)
/// for a restored or recreated set; `None` for other notes.
pub fn warning(note: &Note<'_>) -> Option<Problem> {
    match note {
        Note::Restored { keys } => Some(Problem::new(RESTORED, restored_message(*keys))),
        Note::Recreated => Some(Problem::new(RECREATED, RECREATED_MESSAGE)),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The lines logged while `f` runs, as the text formatter writes them.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_restored_or_recreated_key_set_is_logged_as_a_warning_with_its_policy() {
        let policy = PolicyRef::new("ns", "p");
        let out = logged(|| note(&policy, &Note::Restored { keys: 2 }));
        assert!(out.contains("WARN"), "{out}");
        assert!(out.contains("policy=ns/p"), "{out}");
        assert!(out.contains("KeySetRestored"), "{out}");
        assert!(out.contains("2 key(s)) was written back"), "{out}");

        let out = logged(|| note(&policy, &Note::Recreated));
        assert!(out.contains("WARN"), "{out}");
        assert!(out.contains("policy=ns/p"), "{out}");
        assert!(out.contains("KeySetRecreated"), "{out}");
    }

    #[test]
    fn a_restored_or_recreated_key_set_leaves_a_warning_and_nothing_else_does() {
        assert_eq!(
            warning(&Note::Restored { keys: 1 }).map(|p| p.reason),
            Some(RESTORED.to_string())
        );
        assert_eq!(
            warning(&Note::Recreated).map(|p| p.reason),
            Some(RECREATED.to_string())
        );
        assert_eq!(warning(&Note::Adopting { keys: 1 }), None);
    }
}
