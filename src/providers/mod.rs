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
//!
//! Errors never carry a PIN or key material: they name the provider, the
//! token or key reference, the operation and the provider's return code.

use std::fmt;
use std::sync::Arc;

use crate::keys::alg::Algorithm;
use crate::keys::lifecycle::KeySet;
use crate::keys::material::{RemoteSigner, SigningKey, VerifyingKey};
use crate::keys::redacted::RedactedString;

pub mod pkcs11;

/// Where a provider-held key lives: enough to find exactly that key again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyReference {
    /// An RFC 7512 URI: `pkcs11:token=<label>;id=<CKA_ID>;object=<kid>;type=private`.
    Pkcs11(pkcs11::Pkcs11Uri),
}

impl KeyReference {
    /// The provider type holding the key, as the API names it.
    pub fn provider(&self) -> &'static str {
        match self {
            KeyReference::Pkcs11(_) => PKCS11,
        }
    }
}

impl fmt::Display for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReference::Pkcs11(uri) => uri.fmt(f),
        }
    }
}

/// The signer for a key read back from a stored set: its `keyRef`
/// (`reference`) and its public JWK. Only parses the reference: the
/// provider is reached when the key first signs.
pub fn bind(
    reference: &str,
    public: &VerifyingKey,
) -> Result<Arc<dyn RemoteSigner>, ProviderError> {
    if reference.starts_with("pkcs11:") {
        let uri: pkcs11::Pkcs11Uri = reference.parse()?;
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

/// Destroys the key `reference` names in its provider (which this process
/// must have opened). A key already gone is not an error.
pub fn destroy(reference: &str) -> Result<(), ProviderError> {
    if reference.starts_with("pkcs11:") {
        let uri: pkcs11::Pkcs11Uri = reference.parse()?;
        let provider =
            pkcs11::Pkcs11Provider::find_open(&uri.token).ok_or_else(|| ProviderError::Call {
                provider: PKCS11,
                token: uri.token.clone(),
                op: "destroy a key",
                code: "the token is not open in this process".into(),
            })?;
        return provider.destroy(&uri).map(|_| ());
    }
    Err(ProviderError::BadReference(format!(
        "{:?} is neither a pkcs11: URI nor a KMS key ARN",
        reference.chars().take(64).collect::<String>()
    )))
}

/// The engine's [`KeyHome`](crate::engine::KeyHome) for an adapter that
/// cannot use key providers (yet): here for the `Secret` provider, else
/// unavailable with an error saying so, so no key is generated anywhere
/// else instead.
pub fn unsupported_here(
    spec: Option<&crate::api::KeyProvider>,
    adapter: &str,
) -> crate::engine::KeyHome {
    match spec.map(|p| p.kind) {
        None | Some(crate::api::KeyProviderType::Secret) => crate::engine::KeyHome::Here,
        Some(kind) => crate::engine::KeyHome::Unavailable(ProviderError::Call {
            provider: if kind == crate::api::KeyProviderType::Pkcs11 {
                PKCS11
            } else {
                "AWSKMS"
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

/// The engine's [`KeyHome`](crate::engine::KeyHome) for a standalone
/// policy: the logged-in token of a `PKCS11` provider with `pinFile`
/// (opened once per process and token), or unavailable with the reason.
/// Blocking (module loading, login): call it on the blocking pool.
pub fn standalone_home(spec: Option<&crate::api::KeyProvider>) -> crate::engine::KeyHome {
    use crate::api::KeyProviderType;
    use crate::engine::KeyHome;
    let Some(spec) = spec.filter(|p| p.kind != KeyProviderType::Secret) else {
        return KeyHome::Here;
    };
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

/// The API's name of the PKCS#11 provider.
pub const PKCS11: &str = "PKCS11";

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

/// A provider failed or refused. Messages name the provider, the token or
/// key and the operation; never a PIN, a credential or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider's library or client could not be set up.
    #[error("{provider}: cannot load module {module}: {detail}")]
    ModuleLoad {
        /// `PKCS11`.
        provider: &'static str,
        /// Path of the module.
        module: String,
        /// Why, as the loader says.
        detail: String,
    },
    /// No token with that label.
    #[error("{provider}: no token labelled {label:?} in module {module}")]
    TokenNotFound {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label looked for.
        label: String,
        /// Path of the module.
        module: String,
    },
    /// The token refused the PIN.
    #[error("{provider}: token {token:?} refused the PIN ({code})")]
    PinRefused {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label.
        token: String,
        /// The provider's code (`PinIncorrect`, `PinLocked`, ...).
        code: String,
    },
    /// The PIN could not be read (file or Secret).
    #[error("{provider}: cannot read the PIN from {source_name}: {detail}")]
    PinUnreadable {
        /// `PKCS11`.
        provider: &'static str,
        /// Where the PIN was looked for (a path or a Secret name).
        source_name: String,
        /// Why (never the file's content).
        detail: String,
    },
    /// A provider call failed.
    #[error("{provider}: token {token:?}: {op} failed: {code}")]
    Call {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label (or key reference).
        token: String,
        /// What was attempted.
        op: &'static str,
        /// The provider's code or message.
        code: String,
    },
    /// The referenced key is not (or no longer) in the provider.
    #[error("{provider}: key {reference} not found")]
    KeyNotFound {
        /// `PKCS11`.
        provider: &'static str,
        /// The key reference.
        reference: String,
    },
    /// The provider cannot do this algorithm.
    #[error("{provider}: {alg} is not supported: {detail}")]
    Unsupported {
        /// `PKCS11`.
        provider: &'static str,
        /// The algorithm.
        alg: Algorithm,
        /// What is missing (a mechanism, a key spec).
        detail: String,
    },
    /// The provider returned a signature or public key that does not check out.
    #[error("{provider}: key {reference}: {what}")]
    BadOutput {
        /// `PKCS11`.
        provider: &'static str,
        /// The key reference.
        reference: String,
        /// What is wrong (never the bytes).
        what: String,
    },
    /// A key reference does not parse.
    #[error("invalid key reference: {0}")]
    BadReference(String),
}

impl ProviderError {
    /// The provider type the error is about, as the API names it.
    pub fn provider(&self) -> &'static str {
        match self {
            ProviderError::ModuleLoad { provider, .. }
            | ProviderError::TokenNotFound { provider, .. }
            | ProviderError::PinRefused { provider, .. }
            | ProviderError::PinUnreadable { provider, .. }
            | ProviderError::Call { provider, .. }
            | ProviderError::KeyNotFound { provider, .. }
            | ProviderError::Unsupported { provider, .. }
            | ProviderError::BadOutput { provider, .. } => provider,
            ProviderError::BadReference(_) => PKCS11,
        }
    }
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
