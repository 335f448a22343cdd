//! Shared test support. Each integration test file includes it with `mod support;`.
#![allow(dead_code)]

pub mod controlplane;
pub mod helm;
pub mod jwks;
pub mod markdown;
pub mod node;
pub mod operator;
pub mod pki;
pub mod prometheus;
pub mod signer;
pub mod uds;
