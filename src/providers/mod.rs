//! Key providers with I/O: where the private half of a key lives when it
//! is not in the key set's Secret or state directory.
//!
//! A provider-held key is a public JWK (cached in the stored set, never
//! fetched per signature) plus a [`KeyReference`] that pins the exact
//! object in the provider: an RFC 7512 `pkcs11:` URI naming the token and
//! the object's `CKA_ID`, or a full AWS KMS key ARN. Signing always goes
//! through the provider with that reference, and every signature is checked
//! with the cached public key before it is returned, so a key swapped or
//! damaged behind our back can never make a token the JWK Set does not
//! verify.
//!
//! - [`pkcs11`]: tokens reached through a PKCS#11 module (an HSM, a TPM
//!   through tpm2-pkcs11, SoftHSM in tests), with the `cryptoki` crate.
//! - [`kms`]: AWS KMS, with the official SDK (`aws-sdk-kms`).
//!
//! Errors never carry a PIN or key material: they name the provider, the
//! token or key reference, the operation and the provider's return code.

use std::sync::Arc;

use crate::api;
use crate::keys::alg::KeyParams;
use crate::keys::lifecycle::{KeySet, KeySource};
use crate::keys::material::{RemoteSigner, SigningKey, VerifyingKey};
use crate::keys::redacted::RedactedString;
use crate::publish::credentials::{Credentials, MAX_CREDENTIALS_BYTES};
use crate::reasons;

pub mod kms;
pub mod pkcs11;
mod reference;

pub use reference::{AWSKMS, KeyReference, KmsArn, PKCS11, Pkcs11Uri, ProviderError};

/// The signer for a key read back from a stored set: its `keyRef`
/// (`reference`) and its public JWK. Only parses the reference: the
/// provider is reached when the key first signs.
pub fn bind(
    reference: &str,
    public: &VerifyingKey,
) -> Result<Arc<dyn RemoteSigner>, ProviderError> {
    if reference.starts_with("pkcs11:") {
        let uri: Pkcs11Uri = reference.parse()?;
        if uri.object.as_deref().is_some_and(|o| o != public.kid()) {
            return Err(ProviderError::BadReference(format!(
                "{reference} names object {:?}, not the key's kid {:?}",
                uri.object.as_deref().unwrap_or_default(),
                public.kid()
            )));
        }
        return Ok(Arc::new(pkcs11::Pkcs11Signer::unbound(pkcs11::Pkcs11Key {
            uri,
            verifying: public.clone(),
        })));
    }
    if reference.starts_with("arn:") {
        let arn: KmsArn = reference.parse()?;
        if kms::signing_algorithm(public.alg()).is_none() {
            return Err(ProviderError::Unsupported {
                provider: AWSKMS,
                alg: public.alg(),
                detail: "KMS has no signing algorithm for it".into(),
            });
        }
        return Ok(Arc::new(kms::KmsSigner::unbound(kms::KmsKey {
            arn,
            verifying: public.clone(),
        })));
    }
    Err(ProviderError::BadReference(format!(
        "{:?} is neither a pkcs11: URI nor a KMS key ARN",
        reference.chars().take(64).collect::<String>()
    )))
}

/// The references of provider-held keys in `before` that `after` no
/// longer holds (pruned, revoked or discarded): what to destroy once the
/// write of `after` has landed, and not before (a key leaves the provider
/// only after it has left the stored and published set).
pub fn dropped_references(
    before: &KeySet<Arc<SigningKey>>,
    after: &KeySet<Arc<SigningKey>>,
) -> Vec<String> {
    let kept: std::collections::BTreeSet<&str> = after
        .keys
        .iter()
        .filter_map(|k| k.key.key_reference())
        .collect();
    before
        .keys
        .iter()
        .filter_map(|k| k.key.key_reference())
        .filter(|r| !kept.contains(r))
        .map(str::to_owned)
        .collect()
}

/// Whether two references name the same key: equal, or `pkcs11:` URIs of
/// the same token and object id however they are written (attribute order,
/// percent-encoding, `object`/`type` attributes).
pub fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<Pkcs11Uri>(), b.parse::<Pkcs11Uri>()) {
        (Ok(x), Ok(y)) => x.token == y.token && x.id == y.id,
        _ => false,
    }
}

/// Destroys the key `reference` names in its provider (which this process
/// must have opened): a PKCS#11 key's objects are destroyed, a KMS key's
/// deletion is scheduled with the shortest window (7 days). A key already
/// gone is not an error.
pub fn destroy(reference: &str) -> Result<(), ProviderError> {
    if reference.starts_with("pkcs11:") {
        let uri: Pkcs11Uri = reference.parse()?;
        let provider =
            pkcs11::Pkcs11Provider::find_open(&uri.token).ok_or_else(|| ProviderError::Call {
                provider: PKCS11,
                token: uri.token.clone(),
                op: "destroy a key",
                code: "the token is not open in this process".into(),
            })?;
        return provider.destroy(&uri).map(|_| ());
    }
    if reference.starts_with("arn:") {
        let arn: KmsArn = reference.parse()?;
        let provider = kms::KmsProvider::find_open(&arn).ok_or_else(|| ProviderError::Call {
            provider: AWSKMS,
            token: reference.to_owned(),
            op: "schedule the key's deletion",
            code: "no KMS client for the key's region in this process".into(),
        })?;
        return provider.schedule_deletion(reference);
    }
    Err(ProviderError::BadReference(format!(
        "{:?} is neither a pkcs11: URI nor a KMS key ARN",
        reference.chars().take(64).collect::<String>()
    )))
}

/// The `Degraded` reason for a failure of the provider `error` is about:
/// one naming the provider.
pub fn failure_reason(error: &ProviderError) -> &'static str {
    match error.provider() {
        PKCS11 => reasons::PKCS11_FAILED,
        AWSKMS => reasons::KMS_FAILED,
        _ => reasons::KEY_GENERATION_FAILED,
    }
}

/// Where a policy's new keys are generated and its private keys live.
#[derive(Clone, Debug, Default)]
pub enum KeyHome {
    /// Here, from the OS generator (the `Secret` provider).
    #[default]
    Here,
    /// In a logged-in PKCS#11 token.
    Pkcs11(Arc<pkcs11::Pkcs11Provider>),
    /// In AWS KMS.
    Kms(Arc<kms::KmsProvider>),
    /// The policy names a provider this process cannot use now. Planning
    /// still runs, so the current key keeps signing; a key that has to be
    /// generated fails with this error (`Degraded`, a reason naming the
    /// provider), and no key is generated anywhere else instead.
    Unavailable(ProviderError),
}

/// A key source that refuses, for [`KeyHome::Unavailable`].
pub struct Refusing(pub ProviderError);

impl KeySource<Arc<SigningKey>> for Refusing {
    type Error = ProviderError;

    fn generate(&mut self, _: KeyParams) -> Result<Arc<SigningKey>, Self::Error> {
        Err(self.0.clone())
    }
}

/// The engine's [`KeyHome`] for an adapter that
/// cannot use key providers (yet): here for the `Secret` provider, else
/// unavailable with an error saying so, so no key is generated anywhere
/// else instead.
pub fn unsupported_here(spec: Option<&api::KeyProvider>, adapter: &str) -> KeyHome {
    match spec.map(|p| p.kind) {
        None | Some(api::KeyProviderType::Secret) => KeyHome::Here,
        Some(kind) => KeyHome::Unavailable(ProviderError::Call {
            provider: if kind == api::KeyProviderType::Pkcs11 {
                PKCS11
            } else {
                AWSKMS
            },
            token: String::new(),
            op: "set up the key provider",
            code: format!(
                "{} does not support keyProvider type {} yet",
                adapter,
                kind.as_str()
            ),
        }),
    }
}

/// The engine's [`KeyHome`] for an `AWSKMS` policy (`policy`:
/// `namespace/name`, tagged on its keys), with the credentials the adapter
/// read: `credentialsSecret`'s data in Kubernetes, `credentialsFile`'s
/// lines otherwise, `None` for the ambient chain (environment, IRSA web
/// identity, instance profile). Unavailable, with the reason, when the
/// spec is not `AWSKMS` or the credentials lack a key. Makes no call to
/// KMS; may block briefly (the ambient chain's set-up): call it on the
/// blocking pool.
pub fn kms_home(
    spec: &api::KeyProvider,
    credentials: Option<&Credentials>,
    policy: &str,
) -> KeyHome {
    match kms::KmsConfig::from_spec(spec, credentials, policy)
        .and_then(|c| kms::KmsProvider::open(&c))
    {
        Ok(provider) => KeyHome::Kms(provider),
        Err(e) => KeyHome::Unavailable(e),
    }
}

/// The engine's [`KeyHome`] for a standalone
/// policy (`policy`: `namespace/name`): the logged-in token of a `PKCS11`
/// provider with `pinFile` (opened once per process and token), or KMS for
/// `AWSKMS` (with `credentialsFile`, else the ambient credentials), or
/// unavailable with the reason. Blocking (module loading, login, files):
/// call it on the blocking pool.
pub fn standalone_home(spec: Option<&api::KeyProvider>, policy: &str) -> KeyHome {
    use crate::api::KeyProviderType;
    let Some(spec) = spec.filter(|p| p.kind != KeyProviderType::Secret) else {
        return KeyHome::Here;
    };
    if spec.kind == KeyProviderType::AwsKms {
        if spec.credentials_secret.is_some() {
            return KeyHome::Unavailable(ProviderError::Call {
                provider: AWSKMS,
                token: String::new(),
                op: "read the credentials",
                code: "credentialsSecret applies in Kubernetes; use credentialsFile in standalone mode and for the signer".into(),
            });
        }
        let credentials = match &spec.credentials_file {
            None => None,
            Some(path) => match read_credentials_file(std::path::Path::new(path)) {
                Ok(c) => Some(c),
                Err(e) => return KeyHome::Unavailable(e),
            },
        };
        return kms_home(spec, credentials.as_ref(), policy);
    }
    if spec.kind != KeyProviderType::Pkcs11 {
        return unsupported_here(Some(spec), "standalone mode");
    }
    let Some(pin_file) = &spec.pin_file else {
        return KeyHome::Unavailable(ProviderError::PinUnreadable {
            provider: PKCS11,
            source_name: "spec.keyProvider".into(),
            detail: "standalone mode reads the PIN from pinFile; pinSecret is for Kubernetes"
                .into(),
        });
    };
    let opened = read_pin_file(std::path::Path::new(pin_file)).and_then(|pin| {
        let config = pkcs11::Pkcs11Config::from_spec(spec, pin).ok_or_else(|| {
            ProviderError::BadReference("keyProvider PKCS11 needs module and tokenLabel".into())
        })?;
        pkcs11::Pkcs11Provider::open(&config)
    });
    match opened {
        Ok(provider) => KeyHome::Pkcs11(provider),
        Err(e) => KeyHome::Unavailable(e),
    }
}

/// Reads an AWSKMS `credentialsFile` (`KEY=VALUE` lines, as for
/// `spec.publish`). Errors name the file and the key, never a value.
pub fn read_credentials_file(path: &std::path::Path) -> Result<Credentials, ProviderError> {
    use std::io::Read as _;
    let unreadable = |detail: String| ProviderError::Call {
        provider: AWSKMS,
        token: String::new(),
        op: "read the credentials",
        code: format!("credentialsFile {}: {detail}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.kind().to_string()))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIALS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.kind().to_string()))?;
    Credentials::parse_env(&bytes).map_err(|e| unreadable(e.to_string()))
}

/// Longest PIN file read: PINs are short; a larger file is not a PIN.
const MAX_PIN_FILE: u64 = 1024;

/// Reads a PIN from `path` (standalone and signer `pinFile`): the content
/// without one trailing newline (`\n` or `\r\n`). Errors say which file and
/// why, never what it holds.
pub fn read_pin_file(path: &std::path::Path) -> Result<RedactedString, ProviderError> {
    use std::io::Read as _;
    let unreadable = |detail: String| ProviderError::PinUnreadable {
        provider: PKCS11,
        source_name: path.display().to_string(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.kind().to_string()))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_PIN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.kind().to_string()))?;
    if bytes.len() as u64 > MAX_PIN_FILE {
        return Err(unreadable(format!("larger than {MAX_PIN_FILE} bytes")));
    }
    let mut end = bytes.len();
    if bytes[..end].ends_with(b"\n") {
        end -= 1;
        if bytes[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    if end == 0 {
        return Err(unreadable("empty".into()));
    }
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| unreadable("not UTF-8".into()))?;
    Ok(RedactedString::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_files_lose_one_trailing_newline_and_errors_hide_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        for (content, pin) in [
            ("1234\n", "1234"),
            ("1234\r\n", "1234"),
            ("12 34", "12 34"),
            ("1234\n\n", "1234\n"),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_pin_file(&path).unwrap().expose(), pin, "{content:?}");
        }
        for content in [&b""[..], b"\n", &[0xff, 0xfe][..], &[b'7'; 2000][..]] {
            std::fs::write(&path, content).unwrap();
            let err = read_pin_file(&path).unwrap_err();
            assert!(
                matches!(err, ProviderError::PinUnreadable { .. }),
                "{err:?}"
            );
            assert!(!err.to_string().contains("7777"), "{err}");
        }
        let err = read_pin_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
