//! The publication families (`spec.publish`): per target, the results of
//! writes and read-backs, drift repairs, and the time of the last
//! confirmation. A target is named by its URL, which holds no credential.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::policy::PolicyRef;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    name: String,
    target: String,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    namespace: String,
    name: String,
    target: String,
}

/// What a publication round did with one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicationOp {
    /// The copy needed a write (the set changed, or it drifted).
    Publish,
    /// The copy was read back and found as intended (no write).
    Verify,
}

/// The publication families, registered in [`Metrics::new`].
/// The families of `spec.publish` copies (registered in
/// [`Metrics::new`](super::Metrics::new)), reached as `metrics.publish`.
pub struct PublishMetrics {
    results: Family<ResultLabels, Counter>,
    repairs: Family<TargetLabels, Counter>,
    confirmed: Family<TargetLabels, Gauge>,
}

impl PublishMetrics {
    /// Registers every publication family in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "publication_results",
            "Publication rounds per target, by operation (publish: a write was needed; verify: read back, found as intended) and result (ok, error)",
            results.clone(),
        );
        let repairs = Family::<TargetLabels, Counter>::default();
        registry.register(
            "publication_repairs",
            "Copies rewritten because someone else changed or deleted them after they were confirmed",
            repairs.clone(),
        );
        let confirmed = Family::<TargetLabels, Gauge>::default();
        registry.register_with_unit(
            "publication_confirmed_timestamp",
            "Unix time at which the copy was last read back holding the intended documents",
            Unit::Seconds,
            confirmed.clone(),
        );
        PublishMetrics {
            results,
            repairs,
            confirmed,
        }
    }
}

fn target(policy: &PolicyRef, url: &str) -> TargetLabels {
    TargetLabels {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        target: url.to_owned(),
    }
}

impl PublishMetrics {
    /// Counts one publication round for the copy `url`.
    pub fn record_publication(&self, policy: &PolicyRef, url: &str, op: PublicationOp, ok: bool) {
        self.results
            .get_or_create(&ResultLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                target: url.to_owned(),
                op: match op {
                    PublicationOp::Publish => "publish",
                    PublicationOp::Verify => "verify",
                },
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Counts a drift repair of the copy `url`.
    pub fn inc_publication_repair(&self, policy: &PolicyRef, url: &str) {
        self.repairs.get_or_create(&target(policy, url)).inc();
    }

    /// Sets when the copy `url` was last confirmed (unix seconds).
    pub fn set_publication_confirmed(&self, policy: &PolicyRef, url: &str, at: jiff::Timestamp) {
        self.confirmed
            .get_or_create(&target(policy, url))
            .set(at.as_second());
    }
}
