//! Credentials of a publication target: environment-style `KEY=VALUE` pairs
//! from a Secret (Kubernetes) or a file (standalone, signer), mapped
//! explicitly onto the object store builders. Values never reach a log, an
//! error, a status or a metric: they are held [`Redacted`], and every error
//! text of a target passes through [`Credentials::scrub`].

use std::collections::BTreeMap;
use std::fmt;

use crate::keys::redacted::Redacted;

/// The keys a credentials source may hold. Anything else is refused by name
/// (a typo would otherwise fall back silently to other credentials).
pub const KNOWN_KEYS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ENDPOINT",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// Keys whose values are not secret (names, regions, endpoints): they may
/// appear in messages. Every other value is scrubbed from error texts.
const PUBLIC_KEYS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ENDPOINT",
];

/// Largest credentials source read (a service-account key JSON is ~2.5 KiB).
pub const MAX_CREDENTIALS_BYTES: usize = 64 * 1024;

/// A set of credential values by key. `Debug` prints only the key names.
#[derive(Clone, Default)]
pub struct Credentials {
    values: BTreeMap<String, Redacted<String>>,
}

/// Why a credentials source cannot be used. Names keys and lines, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Larger than [`MAX_CREDENTIALS_BYTES`].
    #[error("larger than {MAX_CREDENTIALS_BYTES} bytes")]
    TooLarge,
    /// A line that is not `KEY=VALUE`.
    #[error("line {line} is not KEY=VALUE")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A key the operator does not know.
    #[error("unknown key {key:?} (known: {})", KNOWN_KEYS.join(", "))]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// A value that is not UTF-8.
    #[error("the value of {key} is not UTF-8")]
    NotUtf8 {
        /// The key.
        key: String,
    },
}

// === impl Credentials ===

impl Credentials {
    /// Parses an environment-style file: `KEY=VALUE` lines, optionally
    /// prefixed with `export `, values optionally in single or double quotes;
    /// blank lines and lines starting with `#` are skipped.
    pub fn parse_env(text: &[u8]) -> Result<Credentials, CredentialsError> {
        if text.len() > MAX_CREDENTIALS_BYTES {
            return Err(CredentialsError::TooLarge);
        }
        let text = std::str::from_utf8(text).map_err(|_| CredentialsError::NotUtf8 {
            key: "(file)".into(),
        })?;
        let mut pairs = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                return Err(CredentialsError::Syntax { line: i + 1 });
            };
            let value = value.trim();
            let value = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| value.strip_prefix(*a).and_then(|v| v.strip_suffix(*b)))
                .unwrap_or(value);
            pairs.push((key.trim().to_owned(), value.as_bytes().to_vec()));
        }
        Credentials::from_pairs(pairs)
    }

    /// Builds credentials from key/value pairs (a Secret's `data`).
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Credentials, CredentialsError> {
        let mut values = BTreeMap::new();
        let mut total = 0usize;
        for (key, value) in pairs {
            total += key.len() + value.len();
            if total > MAX_CREDENTIALS_BYTES {
                return Err(CredentialsError::TooLarge);
            }
            if !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(CredentialsError::UnknownKey { key });
            }
            let value = String::from_utf8(value)
                .map_err(|_| CredentialsError::NotUtf8 { key: key.clone() })?;
            values.insert(key, Redacted::new(value));
        }
        Ok(Credentials { values })
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|v| v.expose().as_str())
            .filter(|v| !v.is_empty())
    }

    /// The key names present.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// `text` with every secret value replaced by `<redacted>`: applied to
    /// every error text of a target before it is stored or reported.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (key, value) in &self.values {
            let value = value.expose();
            // Short values (a region) would blank unrelated words; secrets are long.
            if PUBLIC_KEYS.contains(&key.as_str()) || value.len() < 8 {
                continue;
            }
            out = out.replace(value.as_str(), "<redacted>");
        }
        out
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_files_with_comments_exports_and_quotes() {
        let c = Credentials::parse_env(
            b"# test\nexport AWS_ACCESS_KEY_ID=AKIA123\nAWS_SECRET_ACCESS_KEY=\"s3cr3t/with=equals\"\n\nAWS_REGION='eu-west-1'\n",
        )
        .unwrap();
        assert_eq!(c.get("AWS_ACCESS_KEY_ID"), Some("AKIA123"));
        assert_eq!(c.get("AWS_SECRET_ACCESS_KEY"), Some("s3cr3t/with=equals"));
        assert_eq!(c.get("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(c.get("AWS_SESSION_TOKEN"), None);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_lines_naming_no_value() {
        let e = Credentials::parse_env(b"AWS_SECRET_ACCES_KEY=topsecretvalue\n").unwrap_err();
        assert!(matches!(e, CredentialsError::UnknownKey { .. }));
        assert!(!e.to_string().contains("topsecretvalue"), "{e}");
        let e = Credentials::parse_env(b"AWS_REGION=x\njusttopsecretvalue\n").unwrap_err();
        assert_eq!(e, CredentialsError::Syntax { line: 2 });
        assert!(!e.to_string().contains("topsecretvalue"));
        let big = vec![b'#'; MAX_CREDENTIALS_BYTES + 1];
        assert_eq!(
            Credentials::parse_env(&big).unwrap_err(),
            CredentialsError::TooLarge
        );
    }

    #[test]
    fn debug_and_scrub_never_show_secret_values() {
        let c = Credentials::parse_env(
            b"AWS_ACCESS_KEY_ID=AKIAEXAMPLEKEYID\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG\nAWS_REGION=us-east-1\n",
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("AKIAEXAMPLEKEYID") && !debug.contains("wJalrXUtnFEMIK7MDENG"));
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"));
        let scrubbed =
            c.scrub("denied for AKIAEXAMPLEKEYID signature wJalrXUtnFEMIK7MDENG in us-east-1");
        assert_eq!(
            scrubbed,
            "denied for <redacted> signature <redacted> in us-east-1"
        );
    }
}
