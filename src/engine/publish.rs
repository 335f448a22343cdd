//! The publish step (`spec.publish`): after the write, every copy is made
//! to hold the set that may be served now, read back, and recorded in the
//! policy's [`Tracker`]; the planner reads the tracker's gate on the next
//! pass. Only a writer runs it (the Lease holder in Kubernetes).
//!
//! What a copy holds is the servable set (a revoked kid never, SPEC
//! invariant 9) minus the keys due for pruning: a pruned key leaves every
//! copy before the stored set drops it.

use std::time::Duration;

use jiff::Timestamp;
use tracing::warn;

use crate::api;
use crate::keys::lifecycle::{DEFAULT_REMOVAL_DEADLINE, KeyState, PublicationGate};
use crate::keys::material::public_jwks_json;
use crate::metrics::{Metrics, PublicationOp};
use crate::policy::PolicyRef;
use crate::problem::Problem;
use crate::publish;
use crate::publish::{Copy, Credentials, Documents, Target, Tracker};
use crate::reasons;
use crate::store::StoredKeySet;

/// Default `--publish-verify-interval`: how often each copy is read back
/// and compared when nothing else changes.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(300);
/// How soon a failed copy is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// The copies of one policy, as its adapter resolved them for this pass.
#[derive(Debug)]
pub struct Publication {
    /// Each target with its credentials (`None`: ambient), or why they
    /// cannot be read (a message naming no value).
    pub targets: Vec<(Target, Result<Option<Credentials>, String>)>,
    /// Why `spec.publish` cannot be used at all: nothing is published and
    /// no new key activates.
    pub invalid: Option<String>,
    /// `spec.issuer`, for the discovery document.
    pub issuer: Option<String>,
    /// `--publish-verify-interval`.
    pub verify_interval: Duration,
    /// Deadline of one storage call.
    pub call_timeout: Duration,
}

/// What a publish step found.
#[derive(Debug, Default)]
pub struct Published {
    /// `PublicationPending` / `PublicationTargetInvalid`, naming each
    /// failing copy and its error.
    pub problem: Option<Problem>,
    /// URLs of copies repaired after someone else changed them.
    pub repaired: Vec<String>,
}

// === impl Publication ===

impl Publication {
    /// The copies of `spec.publish` and `extra` (the signer's `--publish`)
    /// as `mode` resolves them, with `default_jwks_path` for a target
    /// without `jwksPath`; every target's credentials are still `Ok(None)`
    /// (ambient): the adapter fills in those it reads (a file, a Secret).
    /// `None` without any target.
    pub fn resolve(
        spec: &api::KeyRotationPolicySpec,
        extra: &[api::PublishTarget],
        mode: publish::Mode,
        default_jwks_path: &str,
        verify_interval: Duration,
    ) -> Option<Publication> {
        if spec.publish.is_empty() && extra.is_empty() {
            return None;
        }
        let all: Vec<api::PublishTarget> = spec.publish.iter().chain(extra).cloned().collect();
        let cx = publish::Context {
            mode,
            issuer: spec.issuer.as_deref(),
            max_age: spec.jwks_max_age(),
            default_jwks_path,
        };
        let (targets, invalid) = match publish::target::resolve(&all, cx) {
            Ok(targets) => (targets, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Some(Publication {
            targets: targets.into_iter().map(|t| (t, Ok(None))).collect(),
            invalid,
            issuer: spec.issuer.clone(),
            verify_interval,
            call_timeout: publish::copy::DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The copies of a standalone or signer policy ([`Publication::resolve`]
    /// in [`Mode::Local`](publish::Mode::Local)) with the credentials files
    /// read now (a rotated file is picked up at the next pass).
    pub async fn local(
        spec: &api::KeyRotationPolicySpec,
        extra: &[api::PublishTarget],
        default_jwks_path: &str,
        verify_interval: Duration,
    ) -> Option<Publication> {
        let mut publication = Publication::resolve(
            spec,
            extra,
            publish::Mode::Local,
            default_jwks_path,
            verify_interval,
        )?;
        for (t, creds) in &mut publication.targets {
            if let publish::CredentialSource::File(path) = &t.credentials {
                *creds = read_credentials(path).await.map(Some);
            }
        }
        Some(publication)
    }

    /// Copies that cannot be written at all, for `why`: nothing is
    /// published and no new key activates (the gate confirms nothing).
    pub fn unavailable(why: String) -> Publication {
        Publication {
            targets: Vec::new(),
            invalid: Some(why),
            issuer: None,
            verify_interval: DEFAULT_VERIFY_INTERVAL,
            call_timeout: publish::copy::DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The targets' URLs, in spec order.
    pub fn urls(&self) -> Vec<&str> {
        self.targets.iter().map(|(t, _)| t.url.as_str()).collect()
    }

    /// The planner's gate for `set`, from what `tracker` holds.
    pub fn gate(&self, tracker: &Tracker, set: &StoredKeySet) -> PublicationGate {
        tracker.gate(
            &self.urls(),
            set.keys.iter().map(|k| k.kid()),
            self.invalid.is_some(),
            DEFAULT_REMOVAL_DEADLINE,
        )
    }

    /// Makes every copy hold what may be served of `keys` at `now`, and
    /// records the results in `tracker` and the metrics.
    pub async fn run(
        &self,
        policy: &PolicyRef,
        tracker: &mut Tracker,
        keys: &StoredKeySet,
        revoked: &std::collections::BTreeSet<String>,
        now: Timestamp,
        metrics: &Metrics,
    ) -> Published {
        if let Some(why) = &self.invalid {
            return Published {
                problem: Some(Problem::new(
                    reasons::PUBLICATION_TARGET_INVALID,
                    format!("{why}; nothing is published and the active key keeps signing"),
                )),
                repaired: Vec::new(),
            };
        }
        tracker.retain(&self.urls());
        let jwks = publishable_jwks(keys, revoked, now);
        let rounds = self.targets.iter().map(|(target, creds)| {
            let jwks = &jwks;
            async move {
                let docs = Documents::build(target, jwks, self.issuer.as_deref());
                let result = match creds {
                    Err(why) => Err(publish::PublishError {
                        kind: publish::ErrorKind::Config,
                        message: format!("{}: {why}", target.url),
                    }),
                    Ok(c) => match Copy::connect(target, c.clone(), self.call_timeout) {
                        Ok(copy) => copy.sync(&docs).await,
                        Err(e) => Err(e),
                    },
                };
                (target, docs, result)
            }
        });
        let results = futures::future::join_all(rounds).await;
        let mut out = Published::default();
        for (target, docs, result) in results {
            let url = target.url.as_str();
            match result {
                Ok(synced) => {
                    let r = tracker.record_ok(url, &docs, &synced, now);
                    let op = if r.wrote {
                        PublicationOp::Publish
                    } else {
                        PublicationOp::Verify
                    };
                    metrics.publish.record_publication(policy, url, op, true);
                    metrics.publish.set_publication_confirmed(policy, url, now);
                    if r.repaired {
                        metrics.publish.inc_publication_repair(policy, url);
                        warn!(%policy, target = url, "a published copy was changed or deleted by someone else; rewritten");
                        out.repaired.push(url.to_owned());
                    }
                }
                Err(e) => {
                    metrics
                        .publish
                        .record_publication(policy, url, PublicationOp::Publish, false);
                    tracker.record_err(url, &e);
                }
            }
        }
        let errors = tracker.errors(&self.urls());
        if !errors.is_empty() {
            out.problem = Some(Problem::new(
                reasons::PUBLICATION_PENDING,
                format!(
                    "{}; the active key keeps signing until every copy holds the next one",
                    errors.join("; ")
                ),
            ));
        }
        out
    }
}

/// Reads a `credentialsFile` (bounded); the error names the file, never a value.
async fn read_credentials(path: &std::path::Path) -> Result<Credentials, String> {
    use tokio::io::AsyncReadExt as _;
    let limit = publish::credentials::MAX_CREDENTIALS_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("credentialsFile {}: {e}", path.display()))?;
    file.take(limit)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("credentialsFile {}: {e}", path.display()))?;
    let creds = Credentials::parse_env(&bytes)
        .map_err(|e| format!("credentialsFile {}: {e}", path.display()));
    zeroize::Zeroize::zeroize(&mut bytes);
    creds
}

/// The JWK Set a copy holds: what may be served (revoked kids withheld)
/// without the retired keys already due for pruning.
pub fn publishable_jwks(
    keys: &StoredKeySet,
    revoked: &std::collections::BTreeSet<String>,
    now: Timestamp,
) -> Vec<u8> {
    let served = keys.servable(revoked);
    public_jwks_json(
        served
            .keys
            .keys
            .iter()
            .filter(|k| !(k.state == KeyState::Retired && k.prune_after.is_some_and(|p| p <= now)))
            .map(|k| k.key.verifying_key()),
    )
}
