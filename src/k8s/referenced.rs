//! Secrets a policy names but the operator does not own: a publication
//! target's `credentialsSecret`, a key provider's `pinSecret`. One reader
//! for all of them, so each follows the same rules:
//!
//! - only in the policy's own namespace, by name (a GET of that one Secret;
//!   never a list, never another namespace);
//! - only a Secret whose owner opted in with the label
//!   [`OPT_IN_LABEL`]`: "true"`. A policy's author naming a Secret is not
//!   enough: whoever may create a policy in a namespace could otherwise make
//!   the operator use (send to a storage endpoint of the author's choosing,
//!   or log in to an HSM with) any Secret there, which the author may not
//!   be allowed to read (a confused deputy). The label is the Secret owner's
//!   consent, like `jwks.dev/adopt` is for adopting a key set;
//! - never a Secret the operator manages (a policy's key set);
//! - read again on every pass of the policy (no cache), so a changed or
//!   rotated Secret is used by the next pass: within the publish retry
//!   (5 s) while something fails, within `--publish-verify-interval`
//!   otherwise.
//!
//! Errors name the Secret, the field that names it and a missing key, never
//! a value. See docs/kubernetes.md ("Secrets a policy names").

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use zeroize::Zeroizing;

use crate::api::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::reasons;

/// The label a Secret's owner sets (to `"true"`) to let policies in its
/// namespace name it as credentials or PIN.
pub const OPT_IN_LABEL: &str = "jwks.dev/credentials";
/// The value of [`OPT_IN_LABEL`] that opts in.
pub const OPT_IN_VALUE: &str = "true";

/// A Secret named by a policy field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The policy's namespace (the only one looked in).
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The field that names it, for messages (`spec.publish[0].credentialsSecret`).
    pub field: String,
}

/// A referenced Secret's data, wiped from memory when dropped.
pub type SecretData = BTreeMap<String, Zeroizing<Vec<u8>>>;

/// Why a referenced Secret cannot be used. Names the Secret and keys only.
#[derive(Debug, thiserror::Error)]
pub enum RefusedSecret {
    /// No Secret of that name in the policy's namespace.
    #[error("Secret {}/{} ({}) does not exist", .0.namespace, .0.name, .0.field)]
    NotFound(Reference),
    /// The Secret's owner has not opted in.
    #[error(
        "Secret {ns}/{name} ({field}) is not opted in to being read by jwks-operator: its owner must label it {OPT_IN_LABEL}={OPT_IN_VALUE} (kubectl label secret -n {ns} {name} {OPT_IN_LABEL}={OPT_IN_VALUE})",
        ns = .0.namespace, name = .0.name, field = .0.field
    )]
    NotOptedIn(Reference),
    /// The Secret is one the operator manages (a key set), not credentials.
    #[error("Secret {}/{} ({}) is a key set jwks-operator manages, not a credentials Secret", .0.namespace, .0.name, .0.field)]
    Managed(Reference),
    /// A data key the field needs is absent or empty.
    #[error("Secret {}/{} ({}) has no data key {key}", .reference.namespace, .reference.name, .reference.field)]
    MissingKey {
        /// The Secret.
        reference: Reference,
        /// The missing key.
        key: String,
    },
    /// The data is there but cannot be used (unknown key, not UTF-8...).
    #[error("Secret {}/{} ({}): {message}", .reference.namespace, .reference.name, .reference.field)]
    Unusable {
        /// The Secret.
        reference: Reference,
        /// What is wrong, naming keys only.
        message: String,
    },
    /// The API server refused or failed the GET.
    #[error("reading Secret {}/{} ({}): {source}", .reference.namespace, .reference.name, .reference.field)]
    Read {
        /// The Secret.
        reference: Reference,
        /// The API error.
        source: Box<kube::Error>,
    },
}

// === impl RefusedSecret ===

impl RefusedSecret {
    /// The `Degraded` reason: [`reasons::SECRET_NOT_OPTED_IN`] when the
    /// Secret's owner must act, [`reasons::REFERENCED_SECRET_UNUSABLE`]
    /// otherwise.
    pub fn reason(&self) -> &'static str {
        match self {
            RefusedSecret::NotOptedIn(_) => reasons::SECRET_NOT_OPTED_IN,
            _ => reasons::REFERENCED_SECRET_UNUSABLE,
        }
    }
}

// === impl Reference ===

impl Reference {
    /// Secret `name` in `namespace`, named by `field`.
    pub fn new(namespace: &str, name: &str, field: impl Into<String>) -> Reference {
        Reference {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            field: field.into(),
        }
    }

    /// Whether `secret` (as read, `None`: absent) may be used for this
    /// reference, and its data if so. Pure.
    pub fn check(&self, secret: Option<Secret>) -> Result<SecretData, RefusedSecret> {
        let Some(secret) = secret else {
            return Err(RefusedSecret::NotFound(self.clone()));
        };
        let labels = secret.labels();
        if labels
            .get(MANAGED_BY_LABEL)
            .is_some_and(|v| v == MANAGED_BY)
        {
            return Err(RefusedSecret::Managed(self.clone()));
        }
        if labels.get(OPT_IN_LABEL).map(String::as_str) != Some(OPT_IN_VALUE) {
            return Err(RefusedSecret::NotOptedIn(self.clone()));
        }
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Zeroizing::new(v.0)))
            .collect())
    }

    /// Reads the Secret (one GET) and [checks](Reference::check) it.
    pub async fn read(&self, client: &Client) -> Result<SecretData, RefusedSecret> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        let secret = api
            .get_opt(&self.name)
            .await
            .map_err(|source| RefusedSecret::Read {
                reference: self.clone(),
                source: Box::new(source),
            })?;
        self.check(secret)
    }

    /// The value of `key` in `data`, or [`RefusedSecret::MissingKey`].
    pub fn value<'d>(&self, data: &'d SecretData, key: &str) -> Result<&'d [u8], RefusedSecret> {
        data.get(key)
            .map(|v| v.as_slice())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RefusedSecret::MissingKey {
                reference: self.clone(),
                key: key.to_owned(),
            })
    }

    /// A [`RefusedSecret::Unusable`] for this Secret.
    pub fn unusable(&self, message: impl Into<String>) -> RefusedSecret {
        RefusedSecret::Unusable {
            reference: self.clone(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    const VALUE: &str = "topSecretValue/0123456789";

    fn reference() -> Reference {
        Reference::new("team", "s3-creds", "spec.publish[0].credentialsSecret")
    }

    fn secret(labels: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("s3-creds".into());
        s.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        s.data = Some(
            [(
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                ByteString(VALUE.as_bytes().to_vec()),
            )]
            .into(),
        );
        s
    }

    fn refused(r: Result<SecretData, RefusedSecret>) -> RefusedSecret {
        match r {
            Ok(_) => panic!("used a Secret that must be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_secret_its_owner_labelled_is_read() {
        let data = reference()
            .check(Some(secret(&[(OPT_IN_LABEL, "true")])))
            .unwrap();
        assert_eq!(
            reference().value(&data, "AWS_SECRET_ACCESS_KEY").unwrap(),
            VALUE.as_bytes()
        );
    }

    #[test]
    fn a_secret_without_the_opt_in_is_refused_saying_exactly_what_to_add() {
        for labels in [
            &[][..],
            &[(OPT_IN_LABEL, "yes")][..],
            &[("other", "true")][..],
        ] {
            let e = refused(reference().check(Some(secret(labels))));
            assert_eq!(e.reason(), reasons::SECRET_NOT_OPTED_IN);
            let text = e.to_string();
            assert!(
                text.contains("Secret team/s3-creds (spec.publish[0].credentialsSecret)")
                    && text.contains(
                        "kubectl label secret -n team s3-creds jwks.dev/credentials=true"
                    ),
                "{text}"
            );
            assert!(!text.contains(VALUE), "{text}");
        }
    }

    #[test]
    fn a_missing_secret_a_managed_key_set_and_a_missing_key_name_the_secret_and_no_value() {
        let e = refused(reference().check(None));
        assert_eq!(e.reason(), reasons::REFERENCED_SECRET_UNUSABLE);
        assert_eq!(
            e.to_string(),
            "Secret team/s3-creds (spec.publish[0].credentialsSecret) does not exist"
        );

        let managed = secret(&[(OPT_IN_LABEL, "true"), (MANAGED_BY_LABEL, MANAGED_BY)]);
        let e = refused(reference().check(Some(managed)));
        assert!(matches!(e, RefusedSecret::Managed(_)), "{e}");
        assert_eq!(e.reason(), reasons::REFERENCED_SECRET_UNUSABLE);

        let data = reference()
            .check(Some(secret(&[(OPT_IN_LABEL, "true")])))
            .unwrap();
        let e = reference().value(&data, "pin").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret team/s3-creds (spec.publish[0].credentialsSecret) has no data key pin"
        );
    }
}
