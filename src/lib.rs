//! jwks-operator: generates JWT signing keys, publishes them as a JWK Set,
//! rotates them on a schedule and prunes retired keys once no token they
//! signed can still be valid.
//!
//! Layout:
//! - [`keys`]: the pure domain (algorithms, key material, JWKs, lifecycle
//!   planner, tokens). No I/O.
//! - [`api`]: the `KeyRotationPolicy` custom resource and its validation.
//! - [`engine`]: one pass over one policy (gather → plan → write → publish
//!   → report), shared by both modes through store and reporter traits.
//! - [`store`]: persistence of key sets (the Secret layout, the standalone
//!   state directory).
//! - [`http`]: the JWKS and token HTTP servers, answering from an in-memory snapshot.
//! - [`metrics`]: Prometheus metrics shared by the engine and the servers.
//! - [`k8s`]: the Kubernetes adapter and controller (`run`).
//! - [`standalone`]: running without Kubernetes, from policy files and a
//!   state directory (`standalone`).
//! - [`signer`]: kube-apiserver's external service-account token signer
//!   (`signer`), on the standalone engine.
//! - [`providers`]: key providers holding private keys outside the
//!   stored set (PKCS#11 tokens).
//! - [`names`]: Kubernetes name rules (RFC 1123), shared by every layer.
//! - [`reasons`]: every condition reason and error kind a problem is reported under.
//! - [`verify`]: checking a JWT against a JWK Set from a URL or file (`verify`).
#![forbid(unsafe_code)]
// Another module's items come in through `use` (clippy.toml says why).
#![cfg_attr(not(test), deny(clippy::absolute_paths))]

pub mod api;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod http;
pub mod k8s;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod problem;
pub mod providers;
pub mod publish;
pub mod reasons;
pub mod signer;
pub mod standalone;
pub mod store;
pub mod verify;
pub mod yaml;
