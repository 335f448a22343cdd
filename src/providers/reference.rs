//! What the providers share, beneath each of them: the name of each
//! provider, how a provider-held key is referred to (an RFC 7512 `pkcs11:`
//! URI or a KMS key ARN), and the error of a provider call. A leaf of `providers/`.

use std::fmt;

use crate::keys::alg::Algorithm;

/// Longest `pkcs11:` URI accepted from a stored set.
const MAX_URI_LEN: usize = 1024;

/// The API's name of the PKCS#11 provider.
pub const PKCS11: &str = "PKCS11";

/// The API's name of the AWS KMS provider.
pub const AWSKMS: &str = "AWSKMS";

/// Longest KMS key ARN accepted from a stored set.
const MAX_ARN_LEN: usize = 256;

/// A full AWS KMS key ARN, `arn:<partition>:kms:<region>:<account>:key/<id>`:
/// it pins one key (an alias ARN would follow the alias wherever it is
/// moved, and is refused).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmsArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The key's region.
    pub region: String,
    /// The owning account.
    pub account: String,
    /// The key id (a UUID, or `mrk-...` for a multi-Region key).
    pub key_id: String,
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:key/{}",
            self.partition, self.region, self.account, self.key_id
        )
    }
}

impl std::str::FromStr for KmsArn {
    type Err = ProviderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ProviderError::BadReference(format!("KMS key ARN: {why}"));
        if s.len() > MAX_ARN_LEN {
            return Err(bad("longer than 256 characters"));
        }
        let fields: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = fields[..] else {
            return Err(bad("not arn:<partition>:kms:<region>:<account>:key/<id>"));
        };
        let token = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if arn != "arn" || service != "kms" {
            return Err(bad("not arn:<partition>:kms:..."));
        }
        if !token(partition) || !token(region) {
            return Err(bad(
                "a partition or region that is not lowercase letters, digits and '-'",
            ));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("an account that is not 12 digits"));
        }
        if resource.starts_with("alias/") {
            return Err(bad(
                "an alias, not a key: aliases can be moved; name the key's own ARN",
            ));
        }
        let key_id = resource
            .strip_prefix("key/")
            .filter(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .ok_or_else(|| bad("no key/<id> resource"))?;
        Ok(KmsArn {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        })
    }
}

/// Where a provider-held key lives: enough to find exactly that key again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyReference {
    /// An RFC 7512 URI: `pkcs11:token=<label>;id=<CKA_ID>;object=<kid>;type=private`.
    Pkcs11(Pkcs11Uri),
    /// A full KMS key ARN.
    AwsKms(KmsArn),
}

impl KeyReference {
    /// The provider type holding the key, as the API names it.
    pub fn provider(&self) -> &'static str {
        match self {
            KeyReference::Pkcs11(_) => PKCS11,
            KeyReference::AwsKms(_) => AWSKMS,
        }
    }
}

impl fmt::Display for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReference::Pkcs11(uri) => uri.fmt(f),
            KeyReference::AwsKms(arn) => arn.fmt(f),
        }
    }
}

// === impl Pkcs11Uri ===

/// An RFC 7512 URI naming one key object: its token and `CKA_ID` (which
/// pin it), and the kid as the object label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pkcs11Uri {
    /// The token label.
    pub token: String,
    /// The object's `CKA_ID`.
    pub id: Vec<u8>,
    /// The object label (`CKA_LABEL`): the kid.
    pub object: Option<String>,
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};id=",
            pct_encode(self.token.as_bytes(), false)
        )?;
        f.write_str(&pct_encode(&self.id, true))?;
        if let Some(object) = &self.object {
            write!(f, ";object={}", pct_encode(object.as_bytes(), false))?;
        }
        f.write_str(";type=private")
    }
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = ProviderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ProviderError::BadReference(format!("pkcs11 URI: {why}"));
        if s.len() > MAX_URI_LEN {
            return Err(bad("longer than 1024 characters"));
        }
        let path = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("does not start with pkcs11:"))?;
        // Query attributes (`?pin-source=...`) are not ours to follow.
        let path = path.split('?').next().unwrap_or_default();
        let (mut token, mut id, mut object) = (None, None, None);
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad("an attribute without '='"))?;
            let value = pct_decode(value).ok_or_else(|| bad("a bad percent-encoding"))?;
            let text =
                || String::from_utf8(value.clone()).map_err(|_| bad("a label that is not UTF-8"));
            match name {
                "token" => token = Some(text()?),
                "id" => id = Some(value),
                "object" => object = Some(text()?),
                "type" if value == b"private" || value == b"public" => {}
                "type" => return Err(bad("type must be private")),
                _ => {}
            }
        }
        let token = token.ok_or_else(|| bad("no token attribute"))?;
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("no id attribute"))?;
        Ok(Pkcs11Uri { token, id, object })
    }
}

fn pct_encode(bytes: &[u8], every_byte: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        if !every_byte && (b.is_ascii_alphanumeric() || b"-._~".contains(b)) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
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
