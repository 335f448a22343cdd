//! Kubernetes object names (RFC 1123), checked the same way everywhere: the
//! HTTP routes, policy files, the state directory and the reconciler.

/// Whether `name` is a valid Kubernetes object name (RFC 1123 subdomain).
pub fn is_dns_subdomain(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is an RFC 1123 DNS label (a namespace name): at most 63
/// lowercase letters, digits and `-`, starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_subdomain(s) && !s.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_a_subdomain_without_dots_of_at_most_63_characters() {
        for ok in ["a", "default", "kube-system", "a1", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("a.b"));
        assert!(is_dns_subdomain(&"x".repeat(253)));
        assert!(!is_dns_subdomain(&"x".repeat(254)));
        assert!(!is_dns_subdomain("a..b.") && !is_dns_subdomain(".a"));
    }
}
