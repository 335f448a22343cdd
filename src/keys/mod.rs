//! The key domain: algorithms, key material, JWK encoding, the lifecycle
//! planner and token signing/verification.
//!
//! Everything here is pure: no Kubernetes, no HTTP, no async runtime, no clock
//! and no OS randomness. Time and randomness come in as parameters, so every
//! rule is unit-testable.

pub mod alg;
pub mod lifecycle;

pub use alg::{Algorithm, KeyParams};
