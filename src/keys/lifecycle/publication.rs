//! The publication gate (`spec.publish`): what the copies in object storage
//! were confirmed to hold, as the planner reads it. Pure; the engine keeps
//! the state (`publish::Tracker`) and hands it in.
//!
//! - A pending key activates only once every copy has been read back
//!   holding it and `publishAhead` has passed since ([`Self::may_activate`]).
//! - A key due for pruning leaves the copies first (the engine writes them
//!   without it); the stored set drops it only once no copy lists it, or
//!   [`Self::removal_deadline`] past its `pruneAfter` (with a warning).
//! - The first key and the replacement of a revoked active key sign at once,
//!   as without publication: there is no key to keep signing instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::model::after;

/// Default [`PublicationGate::removal_deadline`]: a copy that cannot be
/// written for a day no longer holds back pruning.
pub const DEFAULT_REMOVAL_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// What the published copies hold. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicationGate {
    /// Per kid: since when every copy has been confirmed, by reading it
    /// back, to hold it. A kid missing here is not confirmed everywhere.
    pub confirmed: BTreeMap<String, Timestamp>,
    /// kids that some copy lists, or may list (a copy not read yet counts
    /// as listing every stored kid).
    pub listed: BTreeSet<String>,
    /// How long past its `pruneAfter` a key that a copy still lists stays in
    /// the stored set before it is dropped anyway (with a warning).
    pub removal_deadline: Duration,
}

// === impl PublicationGate ===

impl PublicationGate {
    /// When `kid` may start signing under this gate: `publishAhead` after
    /// every copy was confirmed to hold it; `None` while some copy is not.
    pub fn may_activate_at(&self, kid: &str, publish_ahead: Duration) -> Option<Timestamp> {
        self.confirmed.get(kid).map(|c| after(*c, publish_ahead))
    }

    /// Whether a key due for pruning since `prune_after` must stay in the
    /// stored set at `now` because a copy still lists it.
    pub fn holds_back(&self, kid: &str, prune_after: Timestamp, now: Timestamp) -> bool {
        self.listed.contains(kid) && now < after(prune_after, self.removal_deadline)
    }
}
