//! A policy's `spec.keyProvider` in Kubernetes mode: where its new keys are
//! generated ([`KeyHome`]) for this pass.
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
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::warn;

use super::referenced::{Reference, RefusedSecret};
use crate::api::{KeyProviderType, KeyRotationPolicy};
use crate::keys::redacted::RedactedString;
use crate::problem::Problem;
use crate::providers::pkcs11::{Pkcs11Config, Pkcs11Provider};
use crate::providers::{self, KeyHome, PKCS11, ProviderError};
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
        Some(_) => {
            let home = providers::unsupported_here(spec, "Kubernetes mode");
            return with_problem(home, reasons::KEY_GENERATION_FAILED);
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
    let opened = tokio::task::spawn_blocking(move || Pkcs11Provider::open(&config)).await;
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

/// How soon a replica tries again to set up a provider that failed.
pub const REOPEN: Duration = Duration::from_secs(30);

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
