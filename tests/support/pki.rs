//! Test certificates: a CA, and the leaf certificates it signs. One file for
//! every test that makes them: tests/support (the control plane, the node),
//! tests/common and tests/listener_logs.rs (through `#[path]`), and the
//! crate's TLS unit tests (src/http/tls_tests.rs, through `#[path]`).

/// A CA's signing half.
pub type Issuer = rcgen::Issuer<'static, rcgen::KeyPair>;

/// A new self-signed CA named `common_name`: its certificate (PEM) and the
/// issuer that signs leaf certificates with it.
pub fn test_ca(common_name: &str) -> Result<(String, Issuer), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let err = |e: rcgen::Error| format!("generating the test CA {common_name:?}: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, common_name);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    Ok((ca_cert.pem(), rcgen::Issuer::new(ca, ca_key)))
}

/// A leaf certificate signed by `issuer`, for `common_name` (and
/// organisation `org`, a Kubernetes group), valid for the DNS names `dns`
/// and the IPv4 addresses `ips`, restricted to `usages` (none: any):
/// (certificate PEM, private key PEM).
pub fn leaf_cert(
    issuer: &Issuer,
    common_name: &str,
    org: Option<&str>,
    dns: &[&str],
    ips: &[[u8; 4]],
    usages: &[rcgen::ExtendedKeyUsagePurpose],
) -> Result<(String, String), String> {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    let err = |e: rcgen::Error| format!("generating the certificate of {common_name:?}: {e}");
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .map_err(err)?;
    for ip in ips {
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from(*ip)));
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.extended_key_usages = usages.to_vec();
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}
