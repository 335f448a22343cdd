//! The token every minting benchmark mints (`keys`, `providers`): one claim
//! set, so a ratio between two benches compares only where the key lives.

use std::time::Duration;

use jwks_operator::keys::token::{MintSettings, TokenRequest};

pub fn settings() -> MintSettings {
    MintSettings {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        max_ttl: Duration::from_secs(3600),
    }
}

pub fn request() -> TokenRequest {
    TokenRequest {
        sub: Some("bench-user".into()),
        ..TokenRequest::default()
    }
}
