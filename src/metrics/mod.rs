//! Prometheus metrics, exposed as OpenMetrics text on `GET /metrics`.
//!
//! Every name has the prefix `jwks_operator_`:
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `keys` | gauge | `namespace`, `name`, `state` | keys in the set by state (`Pending`, `Active`, `Retired`) |
//! | `rotations_total` | counter | `namespace`, `name`, `reason` | a key became the active signer (`Initial`, `Scheduled`, `Manual`, `Revoked`, `AlgorithmChange`) |
//! | `next_rotation_timestamp_seconds` | gauge | `namespace`, `name` | unix time the next key becomes active |
//! | `next_prune_timestamp_seconds` | gauge | `namespace`, `name` | unix time the next retired key may be pruned (absent when none is retired) |
//! | `pending_activation_timestamp_seconds` | gauge | `namespace`, `name` | unix time the Pending key is due to become active (absent when no key is pending) |
//! | `revoked_key_exposure_timestamp_seconds` | gauge | `namespace`, `name` | unix time until which a verifier that cached the set before the last revocation may still trust the revoked key: revocation time + `verifierRefreshInterval`, or + the served `max-age` (absent before the first revocation) |
//! | `policy_degraded` | gauge | `namespace`, `name` | 1 while the policy has a problem (`Degraded`), else 0 |
//! | `key_set_stale` | gauge | `namespace`, `name` | 1 while this replica's watch of the policy's Secret has failed for longer than its staleness bound (`clockSkew + --propagation-grace`) and its token endpoint does not sign, else 0 |
//! | `key_generation_seconds` | histogram | `alg` | time to generate one key |
//! | `key_generation_failures_total` | counter | `alg` | key generations that failed |
//! | `reconcile_errors_total` | counter | `namespace`, `name`, `kind` | failed reconciles / engine runs, by error kind |
//! | `http_requests_total` | counter | `listener`, `route`, `status` | HTTP responses by listener (`jwks`, `token`, `metrics`), route class and status code |
//! | `http_not_modified_total` | counter | `route` | `304 Not Modified` answers (also counted in `http_requests_total`) |
//! | `http_open_connections` | gauge | `listener` | connections open now |
//! | `http_connections_refused_total` | counter | `listener` | connections closed at once because the listener was at `--http-max-connections` |
//! | `tls_reloads_total` | counter | `result` | changes of the TLS certificate files acted on: `success` (new connections use the new pair) or `failure` (the previous pair stays) |
//! | `tls_reload_failing` | gauge | | 1 while the TLS files on disk are unusable and the previous pair is served, else 0 |
//! | `policy_not_ready_total` | counter | `namespace`, `name` | `503 not_ready` answers (JWK Set or discovery document) for a known policy that has no key yet (also counted in `http_requests_total`) |
//! | `reconcile_duration_seconds` | histogram | | time to reconcile one policy |
//! | `leader` | gauge | | 1 while this replica holds the Lease and writes (always 1 without leader election and in standalone), else 0 |
//! | `build_info` | info | `version` | always 1; the operator's version (and a series that exists as long as the process is scraped) |
//! | `publication_results_total` | counter | `namespace`, `name`, `target`, `op`, `result` | publication rounds per `spec.publish` target: `op` `publish` (a write was needed) or `verify` (read back, found as intended), `result` `ok` or `error` |
//! | `publication_repairs_total` | counter | `namespace`, `name`, `target` | copies rewritten because someone else changed or deleted them after they were confirmed |
//! | `publication_confirmed_timestamp_seconds` | gauge | `namespace`, `name`, `target` | unix time the copy was last read back holding the intended documents |
//!
//! The families are split by owner: `engine` (per-policy key sets,
//! rotations, problems, errors, leadership) and `http` (the listeners), each
//! registering into the one registry here and reached as a field of
//! [`Metrics`] (`metrics.engine.set_leader(..)`, `metrics.http.record_http(..)`),
//! so neither imports this module; the signer registers its own families beside them
//! (`signer::service`).
//!
//! Labels carry policy names, kids never appear, key material never does.
//! The HTTP counters are a fixed array of atomics (no lock, no allocation on
//! the request path); the per-policy families are touched only by the engine.
//!
//! The series a writer reports about key sets (`keys`, the three timestamps)
//! exist only on the replica that writes: a replica that loses the Lease
//! drops them ([`Metrics::set_leader`]), so a former leader never reports a
//! stale rotation time that would look overdue. The alerts and the dashboard
//! in the Helm chart aggregate with `max by (namespace, name)` across replicas.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::providers::kms;

mod engine;
mod http;
mod publish;
#[cfg(test)]
mod tests;

pub use engine::{EngineMetrics, LostKeySet, TimedKeySource, next_prune_time};
pub use http::{HttpMetrics, Listener, RouteClass};
pub use publish::{PublicationOp, PublishMetrics};

/// Prefix of every metric name (`jwks_operator_...`).
pub const PREFIX: &str = "jwks_operator";

/// `Content-Type` of the `/metrics` answer (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// All the operator's metrics, shared (in an `Arc`) by the engine or
/// controller, which reports key sets, rotations and errors, and the HTTP
/// layer, which counts requests and serves the text.
pub struct Metrics {
    registry: Registry,
    /// The engine's and the adapters' per-policy families.
    pub engine: EngineMetrics,
    /// The listeners' families.
    pub http: HttpMetrics,
    /// The families of `spec.publish` copies.
    pub publish: PublishMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric family registered under [`PREFIX`].
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let engine = EngineMetrics::register(&mut registry);
        registry.register(
            "build",
            "The operator's version; always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let http = HttpMetrics::register(&mut registry);
        let publish = PublishMetrics::register(&mut registry);
        // Counted by the providers themselves (one process-wide family:
        // throttling is the provider's, whichever policy's call met it).
        registry.register(
            "key_provider_throttled",
            "Throttled answers from a key provider (each one retried after a backoff), by provider",
            kms::throttled_counter().clone(),
        );
        Metrics {
            registry,
            engine,
            http,
            publish,
        }
    }

    /// The whole exposition in OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; the encoder only propagates fmt errors.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
