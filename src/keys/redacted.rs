//! A wrapper for private key material: never printed, wiped when dropped.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Private material (key bytes, a private JWK Set, a PEM document).
///
/// `Debug` and `Display` print `<redacted>`, so a `Redacted` value can sit inside
/// structs that are logged or put into error messages without leaking what it
/// holds. The value is zeroized when the `Redacted` is dropped. Reading it takes
/// an explicit [`Redacted::expose`], which makes every use easy to find.
///
/// There is deliberately no `PartialEq`: comparing secrets is not something
/// the operator needs, and a naive comparison would not be constant-time.
#[derive(Clone, Default)]
pub struct Redacted<T: Zeroize>(Zeroizing<T>);

// === impl Redacted ===

impl<T: Zeroize> Redacted<T> {
    /// Wraps `value`; from now on it is only reachable through [`Redacted::expose`].
    pub fn new(value: T) -> Self {
        Redacted(Zeroizing::new(value))
    }

    /// The wrapped value. Callers must not log or otherwise copy it anywhere
    /// that outlives the need.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Redacted::new(value)
    }
}

impl<T: Zeroize> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Zeroize> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Private bytes (a private key scalar, a DER document, a serialized private set).
pub type RedactedBytes = Redacted<Vec<u8>>;

/// A private string (a PEM document).
pub type RedactedString = Redacted<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = RedactedString::new("-----BEGIN PRIVATE KEY-----".to_string());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "-----BEGIN PRIVATE KEY-----");
    }
}
