//! What each copy of a policy was last confirmed to hold, kept by the
//! engine between passes, and the [`PublicationGate`] the planner reads
//! from it. Pure: the engine records results, this decides.
//!
//! Kept in memory: after a restart every copy counts as listing every
//! stored kid and holding none until it is read again (the first pass reads
//! them all), so a restart can only delay an activation or a prune, never
//! hasten one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::copy::{PublishError, Synced};
use super::documents::{Documents, digest_name};
use crate::api::PublicationStatus;
use crate::keys::lifecycle::PublicationGate;
use crate::policy;

/// The state of every copy of one policy, by URL.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    targets: BTreeMap<String, TargetState>,
}

#[derive(Clone, Debug, Default)]
struct TargetState {
    /// Per kid: since when the copy has held it, by reading.
    held_since: BTreeMap<String, Timestamp>,
    /// What the last read showed; `None` before the first.
    listed: Option<Vec<String>>,
    /// Digest of the JWK Set last confirmed.
    sha256: Option<String>,
    /// Digests of every object last confirmed (to tell drift from a change).
    documents: Option<Vec<String>>,
    last_published: Option<Timestamp>,
    last_verified: Option<Timestamp>,
    error: Option<String>,
}

/// What recording a successful round found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The round wrote something.
    pub wrote: bool,
    /// It wrote documents the copy had already been confirmed to hold:
    /// someone else changed or deleted them since.
    pub repaired: bool,
}

// === impl Tracker ===

impl Tracker {
    /// Forgets copies no longer configured.
    pub fn retain(&mut self, urls: &[&str]) {
        self.targets.retain(|u, _| urls.contains(&u.as_str()));
    }

    /// Records that `url` was confirmed holding `docs` at `now`.
    pub fn record_ok(
        &mut self,
        url: &str,
        docs: &Documents,
        synced: &Synced,
        now: Timestamp,
    ) -> Recorded {
        let st = self.targets.entry(url.to_owned()).or_default();
        let digests: Vec<String> = docs.objects.iter().map(|o| o.sha256.clone()).collect();
        let wrote = !synced.wrote.is_empty();
        let repaired = wrote && st.documents.as_ref() == Some(&digests);
        if repaired {
            // A copy someone else changed may have been served to verifiers
            // without a kid: it holds each kid only from now on.
            st.held_since.clear();
        }
        st.held_since.retain(|k, _| synced.kids.contains(k));
        for kid in &synced.kids {
            st.held_since.entry(kid.clone()).or_insert(now);
        }
        st.listed = Some(synced.kids.clone());
        st.sha256 = Some(synced.sha256.clone());
        st.documents = Some(digests);
        st.last_verified = Some(now);
        if wrote {
            st.last_published = Some(now);
        }
        st.error = None;
        Recorded { wrote, repaired }
    }

    /// Records that the round for `url` failed; what it held is unknown,
    /// so what it was last seen to list stays.
    pub fn record_err(&mut self, url: &str, error: &PublishError) {
        let st = self.targets.entry(url.to_owned()).or_default();
        st.error = Some(error.message.clone());
    }

    /// The gate over the copies `urls` for a stored set with `stored` kids.
    /// `invalid`: the targets cannot be used at all (nothing is confirmed).
    pub fn gate<'a>(
        &self,
        urls: &[&str],
        stored: impl Iterator<Item = &'a str> + Clone,
        invalid: bool,
        removal_deadline: Duration,
    ) -> PublicationGate {
        let mut confirmed: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut listed: BTreeSet<String> = BTreeSet::new();
        if invalid {
            listed.extend(stored.map(str::to_owned));
            return PublicationGate {
                confirmed,
                listed,
                removal_deadline,
            };
        }
        let states: Vec<Option<&TargetState>> = urls.iter().map(|u| self.targets.get(*u)).collect();
        for st in &states {
            match st.and_then(|s| s.listed.as_ref()) {
                Some(kids) => listed.extend(kids.iter().cloned()),
                None => listed.extend(stored.clone().map(str::to_owned)),
            }
        }
        for kid in stored {
            let since: Option<Vec<Timestamp>> = states
                .iter()
                .map(|st| st.and_then(|s| s.held_since.get(kid).copied()))
                .collect();
            if let Some(latest) = since.and_then(|s| s.into_iter().max()) {
                confirmed.insert(kid.to_owned(), latest);
            }
        }
        PublicationGate {
            confirmed,
            listed,
            removal_deadline,
        }
    }

    /// `status.publication[]`, one entry per URL in `urls`.
    pub fn status(&self, urls: &[&str]) -> Vec<PublicationStatus> {
        urls.iter()
            .map(|url| {
                let st = self.targets.get(*url).cloned().unwrap_or_default();
                PublicationStatus {
                    url: (*url).to_owned(),
                    published_digest: st.sha256.as_deref().map(digest_name),
                    kids: st.listed.unwrap_or_default(),
                    last_published_time: st.last_published.map(time),
                    last_verified_time: st.last_verified.map(time),
                    error: st.error,
                }
            })
            .collect()
    }

    /// What `/policies` shows of the copies `urls`.
    pub fn summary(&self, urls: &[&str]) -> Vec<policy::PublicationSummary> {
        urls.iter()
            .map(|url| {
                let st = self.targets.get(*url).cloned().unwrap_or_default();
                policy::PublicationSummary {
                    url: (*url).to_owned(),
                    published_digest: st.sha256.as_deref().map(digest_name),
                    kids: st.listed.unwrap_or_default(),
                    last_published_time: st.last_published,
                    last_verified_time: st.last_verified,
                    error: st.error,
                }
            })
            .collect()
    }

    /// The errors of the copies `urls`, as `url: error` (empty when all are
    /// confirmed).
    pub fn errors(&self, urls: &[&str]) -> Vec<String> {
        urls.iter()
            .filter_map(|u| self.targets.get(*u)?.error.clone())
            .collect()
    }
}

fn time(t: Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::documents::Object;

    fn t(n: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + n).unwrap()
    }

    fn docs(kids: &[&str]) -> Documents {
        Documents {
            objects: vec![Object {
                path: "jwks.json".into(),
                body: bytes::Bytes::new(),
                sha256: kids.join("+"),
            }],
            kids: kids.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn synced(kids: &[&str], wrote: bool) -> Synced {
        Synced {
            sha256: kids.join("+"),
            kids: kids.iter().map(|k| (*k).to_owned()).collect(),
            wrote: if wrote {
                vec!["jwks.json".into()]
            } else {
                vec![]
            },
        }
    }

    const D: Duration = Duration::from_secs(100);

    #[test]
    fn a_kid_is_confirmed_once_every_copy_holds_it_since_the_latest() {
        let mut tr = Tracker::default();
        let urls = ["s3://a", "s3://b"];
        let stored = ["n", "o"];
        let g = tr.gate(&urls, stored.iter().copied(), false, D);
        assert!(g.confirmed.is_empty(), "nothing read yet");
        assert_eq!(
            g.listed.len(),
            2,
            "an unread copy may list every stored kid"
        );

        tr.record_ok(
            "s3://a",
            &docs(&["n", "o"]),
            &synced(&["n", "o"], true),
            t(10),
        );
        let g = tr.gate(&urls, stored.iter().copied(), false, D);
        assert!(g.confirmed.is_empty(), "s3://b does not hold them yet");
        tr.record_err(
            "s3://b",
            &PublishError {
                kind: crate::publish::ErrorKind::Timeout,
                message: "s3://b: timeout".into(),
            },
        );
        assert_eq!(tr.errors(&urls), ["s3://b: timeout"]);
        tr.record_ok(
            "s3://b",
            &docs(&["n", "o"]),
            &synced(&["n", "o"], true),
            t(30),
        );
        let g = tr.gate(&urls, stored.iter().copied(), false, D);
        assert_eq!(g.confirmed.get("n"), Some(&t(30)));
        assert!(tr.errors(&urls).is_empty());
        // Confirmed again later: held since the first confirmation.
        tr.record_ok(
            "s3://a",
            &docs(&["n", "o"]),
            &synced(&["n", "o"], false),
            t(50),
        );
        assert_eq!(
            tr.gate(&urls, stored.iter().copied(), false, D)
                .confirmed
                .get("n"),
            Some(&t(30))
        );
        // An invalid configuration confirms nothing.
        assert!(
            tr.gate(&urls, stored.iter().copied(), true, D)
                .confirmed
                .is_empty()
        );
    }

    #[test]
    fn a_repair_restarts_the_confirmation_and_a_dropped_kid_leaves_listed() {
        let mut tr = Tracker::default();
        let urls = ["s3://a"];
        tr.record_ok(
            "s3://a",
            &docs(&["n", "o"]),
            &synced(&["n", "o"], true),
            t(10),
        );
        // Written again with the same documents: someone changed the copy.
        let r = tr.record_ok(
            "s3://a",
            &docs(&["n", "o"]),
            &synced(&["n", "o"], true),
            t(20),
        );
        assert!(r.repaired && r.wrote);
        let g = tr.gate(&urls, ["n", "o"].into_iter(), false, D);
        assert_eq!(g.confirmed.get("n"), Some(&t(20)));
        // A new set without "o": not a repair; "o" is no longer listed.
        let r = tr.record_ok("s3://a", &docs(&["n"]), &synced(&["n"], true), t(30));
        assert!(!r.repaired);
        let g = tr.gate(&urls, ["n", "o"].into_iter(), false, D);
        assert!(!g.listed.contains("o"));
        assert_eq!(g.confirmed.get("n"), Some(&t(20)));
        let st = tr.status(&urls);
        assert_eq!(st[0].kids, ["n"]);
        assert_eq!(st[0].published_digest.as_deref(), Some("sha256:n"));
    }
}
