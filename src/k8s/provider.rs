//! A policy's `spec.keyProvider` in Kubernetes mode: where its new keys are
//! generated ([`KeyHome`]) for this pass.
//!
//! `AWSKMS` takes its credentials from `credentialsSecret` through the
//! [`referenced`](super::referenced) reader (opt-in label, read every
//! pass), or the pod's ambient ones (IRSA, the environment) without it.
//!
//! `PKCS11` reads the user PIN from `pinSecret` (data key [`PIN_KEY`])
//! through the [`referenced`](super::referenced) reader, so the Secret's
//! owner must have opted in, and logs in to the token once per process
//! (`Pkcs11Provider::open`, on the blocking pool; the module must be in the
//! operator's image or on its host). The Secret is read on every pass: a
//! changed PIN that the token refuses, or that differs from the one this
//! process logged in with, stops key generation with a reason naming the
//! provider while the current key keeps signing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::{Client, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::warn;

use super::referenced::{Reference, RefusedSecret};
use crate::api::{KeyProvider, KeyProviderType, KeyRotationPolicy};
use crate::keys::redacted::RedactedString;
use crate::problem::Problem;
use crate::providers::pkcs11::{Pkcs11Config, Pkcs11Provider};
use crate::providers::{self, AWSKMS, KeyHome, PKCS11, ProviderError};
use crate::publish::Credentials;
use crate::reasons;

/// The data key of `pinSecret` that holds the PIN.
pub const PIN_KEY: &str = "pin";

/// The policy's key home for this pass, and the problem to show when it
/// cannot be used (`None` for the `Secret` provider and a usable token).
pub async fn home(client: &Client, policy: &KeyRotationPolicy) -> (KeyHome, Option<Problem>) {
    let spec = policy.spec.key_provider.as_ref();
    match spec.map(|p| p.kind) {
        None | Some(KeyProviderType::Secret) => return (KeyHome::Here, None),
        Some(KeyProviderType::Pkcs11) => {}
        Some(KeyProviderType::AwsKms) => {
            let Some(spec) = spec.cloned() else {
                return (KeyHome::Here, None);
            };
            return kms(client, policy, spec).await;
        }
    }
    let Some(spec) = spec.cloned() else {
        return (KeyHome::Here, None);
    };
    let Some(name) = spec.pin_secret.clone() else {
        let e = ProviderError::PinUnreadable {
            provider: PKCS11,
            source_name: "spec.keyProvider".into(),
            detail: "Kubernetes mode reads the PIN from pinSecret; pinFile is for standalone and the signer".into(),
        };
        return with_problem(KeyHome::Unavailable(e), reasons::PKCS11_FAILED);
    };
    let namespace = policy.namespace().unwrap_or_default();
    let reference = Reference::new(&namespace, &name, "spec.keyProvider.pinSecret");
    let pin = match reference
        .read(client)
        .await
        .and_then(|data| pin_of(&reference, &data))
    {
        Ok(pin) => pin,
        Err(refused) => {
            let problem = Problem::new(refused.reason(), refused.to_string());
            let e = ProviderError::PinUnreadable {
                provider: PKCS11,
                source_name: format!("Secret {namespace}/{name}"),
                detail: refused.to_string(),
            };
            return (KeyHome::Unavailable(e), Some(problem));
        }
    };
    let Some(config) = Pkcs11Config::from_spec(&spec, pin) else {
        let e =
            ProviderError::BadReference("keyProvider PKCS11 needs module and tokenLabel".into());
        return with_problem(KeyHome::Unavailable(e), reasons::PKCS11_FAILED);
    };
    let opened = tokio::task::spawn_blocking(move || refusals().open(&config)).await;
    match opened {
        Ok(Ok(provider)) => (KeyHome::Pkcs11(provider), None),
        Ok(Err(e)) => with_problem(KeyHome::Unavailable(e), reasons::PKCS11_FAILED),
        Err(join) => {
            let e = ProviderError::Call {
                provider: PKCS11,
                token: spec.token_label.clone().unwrap_or_default(),
                op: "set up the key provider",
                code: join.to_string(),
            };
            with_problem(KeyHome::Unavailable(e), reasons::PKCS11_FAILED)
        }
    }
}

/// How soon a replica tries again to set up a provider that failed (a PIN
/// the token refused is not tried again: see [`Refusals`]).
pub const REOPEN: Duration = Duration::from_secs(5);

/// The PINs tokens refused, by (module, token label), as SHA-256 digests:
/// a PIN a token refused is not offered to it again until the PIN changes.
/// Every pass of a policy (every 10 s while it fails) and every replica
/// reads the PIN again; offering a refused one each time would count
/// towards the token's retry limit and lock it (most HSMs lock the user PIN
/// after a few failed logins).
#[derive(Default)]
pub struct Refusals {
    refused: Mutex<HashMap<Token, Refused>>,
}

/// A token: (module, label).
type Token = (PathBuf, String);
/// The digest of the PIN a token refused, and its refusal.
type Refused = ([u8; 32], ProviderError);

fn refusals() -> &'static Refusals {
    static REFUSALS: OnceLock<Refusals> = OnceLock::new();
    REFUSALS.get_or_init(Refusals::default)
}

// === impl Refusals ===

impl Refusals {
    /// [`Pkcs11Provider::open`], unless the token refused this very PIN
    /// before (then that refusal again, without a login).
    pub fn open(&self, config: &Pkcs11Config) -> Result<Arc<Pkcs11Provider>, ProviderError> {
        self.open_with(config, Pkcs11Provider::open)
    }

    fn open_with<T>(
        &self,
        config: &Pkcs11Config,
        open: impl FnOnce(&Pkcs11Config) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let key = (config.module.clone(), config.token_label.clone());
        let digest: [u8; 32] =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, config.pin.expose().as_bytes())
                .as_ref()
                .try_into()
                .unwrap_or([0; 32]);
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, e)) = refused.get(&key)
            && *d == digest
        {
            return Err(e.clone());
        }
        let result = open(config);
        match &result {
            Err(e @ ProviderError::PinRefused { .. }) => {
                refused.insert(key, (digest, e.clone()));
            }
            _ => {
                refused.remove(&key);
            }
        }
        result
    }
}

/// Sets up the key provider of every policy `policies` delivers (the
/// serving index sends each policy with one as it arrives or changes), so
/// that every replica's token endpoint signs with token-held keys, not only
/// the leader's (whose reconciler sets it up for generation). Once per
/// policy generation when it works; a failure is logged and tried again
/// after [`REOPEN`] (the leader reports it in status).
pub async fn keep_open(
    client: Client,
    again: UnboundedSender<Arc<KeyRotationPolicy>>,
    mut policies: UnboundedReceiver<Arc<KeyRotationPolicy>>,
) {
    // uid -> the generation whose provider is set up.
    let mut done: HashMap<String, Option<i64>> = HashMap::new();
    while let Some(policy) = policies.recv().await {
        let uid = policy.uid().unwrap_or_default();
        if done.get(&uid) == Some(&policy.metadata.generation) {
            continue;
        }
        match home(&client, &policy).await {
            (_, None) => {
                done.insert(uid, policy.metadata.generation);
            }
            (_, Some(problem)) => {
                done.remove(&uid);
                warn!(
                    policy = %format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any()),
                    reason = %problem.reason,
                    "this replica cannot set up the key provider (retried in {}s): {}",
                    REOPEN.as_secs(),
                    problem.message
                );
                let again = again.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REOPEN).await;
                    let _ = again.send(policy);
                });
            }
        }
    }
}

/// The home of an `AWSKMS` policy: KMS with the credentials of its
/// `credentialsSecret` (read now through the referenced-Secret reader), or
/// the pod's ambient ones without it.
async fn kms(
    client: &Client,
    policy: &KeyRotationPolicy,
    spec: KeyProvider,
) -> (KeyHome, Option<Problem>) {
    let namespace = policy.namespace().unwrap_or_default();
    let unreadable = |code: String| ProviderError::Call {
        provider: AWSKMS,
        token: String::new(),
        op: "read the credentials",
        code,
    };
    if spec.credentials_file.is_some() {
        let e = unreadable(
            "credentialsFile applies in standalone mode and for the signer; use credentialsSecret in Kubernetes".into(),
        );
        return with_reason(KeyHome::Unavailable(e));
    }
    let credentials = match &spec.credentials_secret {
        None => None,
        Some(name) => {
            let reference = Reference::new(&namespace, name, "spec.keyProvider.credentialsSecret");
            let read = reference.read(client).await.and_then(|data| {
                Credentials::from_pairs(data.iter().map(|(k, v)| (k.clone(), v.to_vec())))
                    .map_err(|e| reference.unusable(e.to_string()))
            });
            match read {
                Ok(c) => Some(c),
                Err(refused) => {
                    let problem = Problem::new(refused.reason(), refused.to_string());
                    return (
                        KeyHome::Unavailable(unreadable(refused.to_string())),
                        Some(problem),
                    );
                }
            }
        }
    };
    let name = format!("{namespace}/{}", policy.name_any());
    let home = tokio::task::spawn_blocking(move || {
        providers::kms_home(&spec, credentials.as_ref(), &name)
    })
    .await
    .unwrap_or_else(|e| KeyHome::Unavailable(unreadable(e.to_string())));
    with_reason(home)
}

/// An unavailable home with its error shown under the reason naming its
/// provider ([`providers::failure_reason`]).
fn with_reason(home: KeyHome) -> (KeyHome, Option<Problem>) {
    let reason = match &home {
        KeyHome::Unavailable(e) => providers::failure_reason(e),
        _ => reasons::KEY_GENERATION_FAILED,
    };
    with_problem(home, reason)
}

/// An unavailable home with its error shown under `reason`.
fn with_problem(home: KeyHome, reason: &str) -> (KeyHome, Option<Problem>) {
    let problem = match &home {
        KeyHome::Unavailable(e) => Some(Problem::new(
            reason,
            format!("{e}; the current key keeps signing and no key is generated anywhere else"),
        )),
        _ => None,
    };
    (home, problem)
}

/// The PIN in `data`: key [`PIN_KEY`], UTF-8, without one trailing newline
/// (`kubectl create secret --from-file` keeps the file's).
fn pin_of(
    reference: &Reference,
    data: &super::referenced::SecretData,
) -> Result<RedactedString, RefusedSecret> {
    let raw = reference.value(data, PIN_KEY)?;
    let raw = raw
        .strip_suffix(b"\n")
        .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
        .unwrap_or(raw);
    if raw.is_empty() {
        return Err(RefusedSecret::MissingKey {
            reference: reference.clone(),
            key: PIN_KEY.into(),
        });
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| reference.unusable(format!("data key {PIN_KEY} is not UTF-8")))?;
    Ok(RedactedString::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn data(pin: &[u8]) -> super::super::referenced::SecretData {
        [(PIN_KEY.to_owned(), Zeroizing::new(pin.to_vec()))].into()
    }

    fn config(pin: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: "/m.so".into(),
            token_label: "t".into(),
            pin: RedactedString::new(pin.to_owned()),
        }
    }

    /// A PIN the token refused is not offered again (each failed login
    /// counts towards the token's lock-out); another PIN is, and a working
    /// one clears the record.
    #[test]
    fn a_refused_pin_is_not_offered_to_the_token_again() {
        let refusals = Refusals::default();
        let logins = std::cell::Cell::new(0);
        let refuse = |_: &Pkcs11Config| -> Result<(), ProviderError> {
            logins.set(logins.get() + 1);
            Err(ProviderError::PinRefused {
                provider: PKCS11,
                token: "t".into(),
                code: "PinIncorrect".into(),
            })
        };
        for _ in 0..3 {
            let e = refusals.open_with(&config("wrong-1"), refuse).unwrap_err();
            assert!(matches!(e, ProviderError::PinRefused { .. }), "{e}");
        }
        assert_eq!(logins.get(), 1, "one login with the refused PIN");
        refusals.open_with(&config("wrong-2"), refuse).unwrap_err();
        assert_eq!(logins.get(), 2, "a changed PIN is tried");
        refusals
            .open_with(&config("right"), |_| -> Result<(), ProviderError> {
                logins.set(logins.get() + 1);
                Ok(())
            })
            .unwrap();
        refusals.open_with(&config("wrong-2"), refuse).unwrap_err();
        assert_eq!(logins.get(), 4, "after a success, a PIN is tried afresh");
        // Other failures (a module that does not load) are retried.
        let other = |_: &Pkcs11Config| -> Result<(), ProviderError> {
            logins.set(logins.get() + 1);
            Err(ProviderError::BadReference("x".into()))
        };
        refusals.open_with(&config("p"), other).unwrap_err();
        refusals.open_with(&config("p"), other).unwrap_err();
        assert_eq!(logins.get(), 6);
    }

    #[test]
    fn the_pin_loses_one_trailing_newline_and_errors_show_no_value() {
        let r = Reference::new("ns", "hsm-pin", "spec.keyProvider.pinSecret");
        for (raw, pin) in [
            (&b"1234"[..], "1234"),
            (b"1234\n", "1234"),
            (b"1234\r\n", "1234"),
        ] {
            assert_eq!(pin_of(&r, &data(raw)).unwrap().expose(), pin);
        }
        let e = pin_of(&r, &data(b"\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret ns/hsm-pin (spec.keyProvider.pinSecret) has no data key pin"
        );
        let e = pin_of(&r, &data(&[0xff, 0x37, 0x37, 0x37])).unwrap_err();
        assert!(!e.to_string().contains("777"), "{e}");
        let e = pin_of(&r, &Default::default()).unwrap_err();
        assert!(matches!(e, RefusedSecret::MissingKey { .. }), "{e}");
    }
}
