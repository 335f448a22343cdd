//! The material as the lifecycle planner sees it: a [`LifecycleKey`]
//! behind an `Arc`, and a [`KeySource`] generating real keys.

use std::sync::Arc;

use super::error::KeyError;
use super::key::SigningKey;
use crate::keys::alg::KeyParams;
use crate::keys::lifecycle::{KeySource, LifecycleKey};

/// Key sets hold shared references: the secret exists once in memory however
/// many snapshots point at it.
impl LifecycleKey for Arc<SigningKey> {
    fn kid(&self) -> &str {
        SigningKey::kid(self)
    }

    fn params(&self) -> KeyParams {
        SigningKey::params(self)
    }
}

/// Generates real keys from a caller-supplied random number generator (the OS
/// generator in the binary, a seeded one in tests).
pub struct RngKeySource<R>(pub R);

impl<R: rand_core::CryptoRng> KeySource<Arc<SigningKey>> for RngKeySource<R> {
    type Error = KeyError;

    fn generate(&mut self, params: KeyParams) -> Result<Arc<SigningKey>, Self::Error> {
        SigningKey::generate(params, &mut self.0).map(Arc::new)
    }
}
