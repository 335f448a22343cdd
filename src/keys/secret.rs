//! A wrapper for private key material: never printed, wiped when dropped.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Private material (key bytes, a private JWK Set, a PEM document).
///
/// `Debug` and `Display` print `<redacted>`, so a `Secret` can sit inside
/// structs that are logged or put into error messages without leaking what it
/// holds. The value is zeroized when the `Secret` is dropped. Reading it takes
/// an explicit [`Secret::expose`], which makes every use easy to find.
///
/// There is deliberately no `PartialEq`: comparing secrets is not something
/// the operator needs, and a naive comparison would not be constant-time.
#[derive(Clone, Default)]
pub struct Secret<T: Zeroize>(Zeroizing<T>);

// === impl Secret ===

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`; from now on it is only reachable through [`Secret::expose`].
    pub fn new(value: T) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The wrapped value. Callers must not log or otherwise copy it anywhere
    /// that outlives the need.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret::new(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Secret bytes (a private key scalar, a DER document, a serialized private set).
pub type SecretBytes = Secret<Vec<u8>>;

/// A secret string (a PEM document).
pub type SecretString = Secret<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretString::new("-----BEGIN PRIVATE KEY-----".to_string());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "-----BEGIN PRIVATE KEY-----");
    }
}
