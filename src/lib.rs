//! jwks-operator: generates JWT signing keys, publishes them as a JWK Set,
//! rotates them on a schedule and prunes retired keys once no token they
//! signed can still be valid.
//!
//! Layout:
//! - [`keys`]: the pure domain (algorithms, key material, JWKs, lifecycle
//!   planner, tokens). No I/O.
//! - [`api`]: the `KeyRotationPolicy` custom resource and its validation.
//! - [`store`]: persistence of key sets (the Secret layout, the standalone
//!   state directory).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod k8s;
pub mod keys;
pub mod store;
