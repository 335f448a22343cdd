//! Commands for humans, in the spirit of cert-manager's `cmctl`:
//! `jwks-operator status` (a policy's keys, conditions and recent Events)
//! and `jwks-operator revoke` (adds a kid to `spec.revokedKeyIDs`).
//!
//! What to show and whether a revocation is allowed are pure functions
//! ([`StatusReport::new`], [`StatusReport::render`], [`plan_revocation`],
//! [`confirm`]); the async functions only fetch and patch.

use std::io::{BufRead, Write};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::api;
use crate::api::{KeyRotationPolicy, KeyStateName, KeyStatus, PublicationStatus};

/// Why a `status` or `revoke` command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The policy does not exist.
    #[error("KeyRotationPolicy {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
    },
    /// An API call failed.
    #[error("{action} KeyRotationPolicy {namespace}/{name}: {source}")]
    Api {
        /// What was being done (`reading`, `listing events of`, `patching`).
        action: &'static str,
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause (boxed: a kube error is large).
        #[source]
        source: Box<kube::Error>,
    },
    /// The kid is not one of the policy's keys.
    #[error(
        "KeyRotationPolicy {namespace}/{name} has no key {kid} (its keys: {known}); nothing was changed"
    )]
    UnknownKey {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// The kid asked for.
        kid: String,
        /// The policy's kids, comma-separated (or `none`).
        known: String,
    },
    /// No confirmation could be asked for, and `--yes` was not given.
    #[error(
        "refusing to revoke key {kid} of {namespace}/{name} without confirmation: standard input is not a terminal; pass --yes to revoke non-interactively"
    )]
    NotConfirmable {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// The kid.
        kid: String,
    },
    /// The user answered no.
    #[error("revocation of key {kid} of {namespace}/{name} cancelled; nothing was changed")]
    Cancelled {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// The kid.
        kid: String,
    },
    /// Reading the answer failed.
    #[error("reading the confirmation: {0}")]
    Io(#[from] std::io::Error),
}

// === status ===

/// One Event about the policy, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Machine-readable reason (`KeyCreated`, `KeyActivated`, ...).
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times it happened.
    pub count: i32,
    /// When it last happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
}

impl EventSummary {
    /// Summarises a core/v1 Event (also those written through events.k8s.io/v1).
    pub fn of(event: &Event) -> EventSummary {
        let last_seen = event
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0)
            .or(event.last_timestamp.as_ref().map(|t| t.0))
            .or(event.event_time.as_ref().map(|t| t.0))
            .or(event.first_timestamp.as_ref().map(|t| t.0))
            .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let count = event
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(event.count)
            .unwrap_or(1);
        EventSummary {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            count,
            last_seen,
        }
    }
}

/// What `jwks-operator status` shows (and prints as JSON with `-o json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// `spec.algorithm`.
    pub algorithm: String,
    /// `spec.rotationInterval`.
    pub rotation_interval: String,
    /// `spec.revokedKeyIDs`.
    #[serde(rename = "revokedKeyIDs")]
    pub revoked_key_ids: Vec<String>,
    /// `status.activeKeyID`.
    #[serde(rename = "activeKeyID", skip_serializing_if = "Option::is_none")]
    pub active_key_id: Option<String>,
    /// `status.lastRotationTime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Timestamp>,
    /// `status.lastRotationReason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_reason: Option<String>,
    /// `status.nextRotationTime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Timestamp>,
    /// `status.secretName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `status.jwksURI`.
    #[serde(rename = "jwksURI", skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `status.keys`, newest first.
    pub keys: Vec<KeyStatus>,
    /// `status.conditions`.
    pub conditions: Vec<Condition>,
    /// `status.publication[]`: what each `spec.publish` copy holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publication: Vec<PublicationStatus>,
    /// The most recent Events about the policy, newest first.
    pub events: Vec<EventSummary>,
}

fn reason_name(r: api::RotationReasonName) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn state_name(s: KeyStateName) -> &'static str {
    match s {
        KeyStateName::Pending => "Pending",
        KeyStateName::Active => "Active",
        KeyStateName::Retired => "Retired",
    }
}

/// RFC 3339 in UTC, to the second.
fn time(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A short age such as `42s`, `5m`, `3h`, `2d` (`in 5m` for the future).
fn age(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    let (future, secs) = (secs < 0, secs.unsigned_abs());
    let text = match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if future { format!("in {text}") } else { text }
}

/// Left-aligned columns separated by three spaces, like `kubectl get`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

// === impl StatusReport ===

impl StatusReport {
    /// The report for `policy` with `events` (any order; the `limit` most
    /// recent are kept, newest first).
    pub fn new(policy: &KeyRotationPolicy, events: &[Event], limit: usize) -> StatusReport {
        let status = policy.status.clone().unwrap_or_default();
        let mut events: Vec<EventSummary> = events.iter().map(EventSummary::of).collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        events.truncate(limit);
        StatusReport {
            namespace: policy.namespace().unwrap_or_default(),
            name: policy.name_any(),
            algorithm: policy.spec.algorithm.as_str().to_owned(),
            rotation_interval: policy.spec.rotation_interval.to_string(),
            revoked_key_ids: policy.spec.revoked_key_ids.clone(),
            active_key_id: status.active_key_id,
            last_rotation_time: status.last_rotation_time.map(|t| t.0),
            last_rotation_reason: status.last_rotation_reason.map(reason_name),
            next_rotation_time: status.next_rotation_time.map(|t| t.0),
            secret_name: status.secret_name,
            jwks_uri: status.jwks_uri,
            keys: status.keys,
            conditions: status.conditions,
            publication: status.publication,
            events,
        }
    }

    /// The human-readable form: a summary, then tables of keys, conditions
    /// and events. `now` is used for ages only.
    pub fn render(&self, now: Timestamp) -> String {
        let none = || "-".to_owned();
        let opt_time = |t: Option<Timestamp>| t.map(time).unwrap_or_else(none);
        let mut out = String::new();
        let summary = [
            ("Name", self.name.clone()),
            ("Namespace", self.namespace.clone()),
            ("Algorithm", self.algorithm.clone()),
            ("Rotation interval", self.rotation_interval.clone()),
            (
                "Active key",
                self.active_key_id.clone().unwrap_or_else(none),
            ),
            (
                "Last rotation",
                match (&self.last_rotation_time, &self.last_rotation_reason) {
                    (Some(t), Some(r)) => format!("{} ({r})", time(*t)),
                    (Some(t), None) => time(*t),
                    _ => none(),
                },
            ),
            (
                "Next rotation",
                match self.next_rotation_time {
                    Some(t) => format!("{} ({})", time(t), age(t, now)),
                    None => none(),
                },
            ),
            ("Secret", self.secret_name.clone().unwrap_or_else(none)),
            ("JWKS URI", self.jwks_uri.clone().unwrap_or_else(none)),
            (
                "Revoked key IDs",
                if self.revoked_key_ids.is_empty() {
                    none()
                } else {
                    self.revoked_key_ids.join(", ")
                },
            ),
        ];
        for (label, value) in summary {
            out.push_str(&format!("{:<19}{value}\n", format!("{label}:")));
        }

        out.push_str("\nKeys:\n");
        if self.keys.is_empty() {
            out.push_str("  (none yet)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .keys
                .iter()
                .map(|k| {
                    vec![
                        k.kid.clone(),
                        k.alg.as_str().to_owned(),
                        state_name(k.state).to_owned(),
                        time(k.created_at.0),
                        time(k.activates_at.0),
                        opt_time(k.retired_at.as_ref().map(|t| t.0)),
                        opt_time(k.prune_after.as_ref().map(|t| t.0)),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "KID",
                    "ALG",
                    "STATE",
                    "CREATED",
                    "ACTIVATES",
                    "RETIRED",
                    "PRUNE AFTER",
                ],
                &rows,
            ));
        }

        out.push_str("\nConditions:\n");
        if self.conditions.is_empty() {
            out.push_str("  (none yet)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .conditions
                .iter()
                .map(|c| {
                    vec![
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        age(c.last_transition_time.0, now),
                        c.message.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
                &rows,
            ));
        }

        if !self.publication.is_empty() {
            out.push_str("\nPublished copies:\n");
            let rows: Vec<Vec<String>> = self
                .publication
                .iter()
                .map(|c| {
                    vec![
                        c.url.clone(),
                        if c.kids.is_empty() {
                            none()
                        } else {
                            c.kids.join(",")
                        },
                        opt_time(c.last_published_time.as_ref().map(|t| t.0)),
                        c.last_verified_time
                            .as_ref()
                            .map(|t| age(t.0, now))
                            .unwrap_or_else(none),
                        c.error.clone().unwrap_or_else(none),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["URL", "KIDS", "PUBLISHED", "VERIFIED", "ERROR"],
                &rows,
            ));
        }

        out.push_str("\nEvents:\n");
        if self.events.is_empty() {
            out.push_str("  (none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .events
                .iter()
                .map(|e| {
                    vec![
                        e.last_seen.map(|t| age(t, now)).unwrap_or_else(none),
                        e.type_.clone(),
                        e.reason.clone(),
                        e.count.to_string(),
                        e.message.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"],
                &rows,
            ));
        }
        out
    }
}

fn api_error(action: &'static str, namespace: &str, name: &str, e: kube::Error) -> AdminError {
    match e {
        kube::Error::Api(s) if s.code == 404 => AdminError::NotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        source => AdminError::Api {
            action,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        },
    }
}

/// Reads policy `namespace/name` and its most recent `limit` Events.
pub async fn status(
    client: Client,
    namespace: &str,
    name: &str,
    limit: usize,
) -> Result<StatusReport, AdminError> {
    let policies: Api<KeyRotationPolicy> = Api::namespaced(client.clone(), namespace);
    let policy = policies
        .get(name)
        .await
        .map_err(|e| api_error("reading", namespace, name, e))?;
    let events: Api<Event> = Api::namespaced(client, namespace);
    let selector = format!("involvedObject.kind=KeyRotationPolicy,involvedObject.name={name}");
    let listed = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| api_error("listing events of", namespace, name, e))?;
    // Only this incarnation's Events, not those of a deleted namesake.
    let uid = policy.uid();
    let mine: Vec<Event> = listed
        .items
        .into_iter()
        .filter(|e| uid.is_none() || e.involved_object.uid == uid)
        .collect();
    Ok(StatusReport::new(&policy, &mine, limit))
}

// === revoke ===

/// What revoking a kid would do to a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Add the kid: `spec.revokedKeyIDs` becomes this list.
    Revoke {
        /// The new `spec.revokedKeyIDs`.
        revoked: Vec<String>,
        /// The key's state now (revoking the Active key makes a fresh key
        /// active at once).
        state: KeyStateName,
    },
    /// The kid is already in `spec.revokedKeyIDs`: nothing to do.
    AlreadyRevoked,
}

/// Decides whether `kid` can be revoked in `policy`: it must be one of the
/// keys in its status (or already revoked).
pub fn plan_revocation(policy: &KeyRotationPolicy, kid: &str) -> Result<Revocation, AdminError> {
    if policy.spec.revoked_key_ids.iter().any(|k| k == kid) {
        return Ok(Revocation::AlreadyRevoked);
    }
    let keys = policy
        .status
        .as_ref()
        .map(|s| s.keys.as_slice())
        .unwrap_or_default();
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        let known: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        return Err(AdminError::UnknownKey {
            namespace: policy.namespace().unwrap_or_default(),
            name: policy.name_any(),
            kid: kid.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let mut revoked = policy.spec.revoked_key_ids.clone();
    revoked.push(kid.to_owned());
    Ok(Revocation::Revoke {
        revoked,
        state: key.state,
    })
}

/// The question `revoke` asks before changing anything.
pub fn confirmation_prompt(namespace: &str, name: &str, kid: &str, state: KeyStateName) -> String {
    let consequence = match state {
        KeyStateName::Active => {
            "It is the ACTIVE key: a fresh key becomes active at once, and every token it signed stops verifying."
        }
        KeyStateName::Pending => "It is the pending key: it is withdrawn before it ever signs.",
        KeyStateName::Retired => {
            "It is a retired key: tokens it signed that are still valid stop verifying."
        }
    };
    format!("Revoke key {kid} of KeyRotationPolicy {namespace}/{name}? {consequence} [y/N]: ")
}

/// Writes `prompt` and reads one line: true only for `y` or `yes` (any case).
pub fn confirm(
    input: &mut impl BufRead,
    output: &mut impl Write,
    prompt: &str,
) -> std::io::Result<bool> {
    output.write_all(prompt.as_bytes())?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// How a revocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The kid was added to `spec.revokedKeyIDs`.
    Revoked,
    /// It was there already; nothing changed.
    AlreadyRevoked,
}

/// Adds `kid` to `spec.revokedKeyIDs` of `namespace/name`, after `ask`
/// (given the prompt) says yes. The update carries the resourceVersion it
/// was decided on, so a concurrent edit is never overwritten: on a conflict
/// the policy is read and checked again (the question is asked once).
pub async fn revoke(
    client: Client,
    namespace: &str,
    name: &str,
    kid: &str,
    mut ask: impl FnMut(&str) -> Result<bool, AdminError>,
) -> Result<RevokeOutcome, AdminError> {
    let policies: Api<KeyRotationPolicy> = Api::namespaced(client, namespace);
    let mut confirmed = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let policy = policies
            .get(name)
            .await
            .map_err(|e| api_error("reading", namespace, name, e))?;
        let (revoked, state) = match plan_revocation(&policy, kid)? {
            Revocation::AlreadyRevoked => return Ok(RevokeOutcome::AlreadyRevoked),
            Revocation::Revoke { revoked, state } => (revoked, state),
        };
        if !confirmed {
            if !ask(&confirmation_prompt(namespace, name, kid, state))? {
                return Err(AdminError::Cancelled {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    kid: kid.to_owned(),
                });
            }
            confirmed = true;
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": policy.resource_version()},
            "spec": {"revokedKeyIDs": revoked},
        });
        match policies
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(RevokeOutcome::Revoked),
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => continue,
            Err(e) => return Err(api_error("patching", namespace, name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keys: serde_json::Value, revoked: &[&str]) -> KeyRotationPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": "api", "namespace": "team-a", "uid": "u1"},
            "spec": {"algorithm": "ES256", "revokedKeyIDs": revoked},
            "status": {
                "activeKeyID": "kid-active",
                "keys": keys,
                "lastRotationTime": "2026-11-30T10:00:00Z",
                "lastRotationReason": "Scheduled",
                "nextRotationTime": "2026-12-01T10:00:00Z",
                "secretName": "api-jwks",
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KeySetPublished",
                    "message": "2 keys published", "lastTransitionTime": "2026-11-30T10:00:00Z"
                }]
            }
        }))
        .unwrap()
    }

    fn two_keys() -> serde_json::Value {
        serde_json::json!([
            {"kid": "kid-pending", "alg": "ES256", "state": "Pending",
             "createdAt": "2026-12-01T09:00:00Z", "activatesAt": "2026-12-01T10:00:00Z"},
            {"kid": "kid-active", "alg": "ES256", "state": "Active",
             "createdAt": "2026-11-30T09:00:00Z", "activatesAt": "2026-11-30T10:00:00Z"},
            {"kid": "kid-old", "alg": "ES256", "state": "Retired",
             "createdAt": "2026-11-29T09:00:00Z", "activatesAt": "2026-11-29T10:00:00Z",
             "retiredAt": "2026-11-30T10:00:00Z", "pruneAfter": "2026-11-30T11:01:00Z"}
        ])
    }

    fn event(reason: &str, at: &str, uid: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("e-{reason}"), "namespace": "team-a"},
            "involvedObject": {"kind": "KeyRotationPolicy", "name": "api", "uid": uid},
            "type": "Normal", "reason": reason, "message": format!("{reason} happened"),
            "eventTime": at, "reportingComponent": "jwks-operator", "reportingInstance": "x",
            "action": "Rotate"
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-12-01T09:30:00Z".parse().unwrap()
    }

    #[test]
    fn status_shows_every_key_condition_and_the_newest_events_first() {
        let events = [
            event("KeyCreated", "2026-12-01T09:00:00Z", "u1"),
            event("KeyActivated", "2026-11-30T10:00:00Z", "u1"),
            event("KeyRetired", "2026-11-30T10:00:01Z", "u1"),
        ];
        let report = StatusReport::new(&policy(two_keys(), &[]), &events, 2);
        assert_eq!(
            report
                .events
                .iter()
                .map(|e| e.reason.as_str())
                .collect::<Vec<_>>(),
            ["KeyCreated", "KeyRetired"],
            "the 2 most recent, newest first"
        );
        let text = report.render(now());
        for needle in [
            "Name:              api",
            "Namespace:         team-a",
            "Active key:        kid-active",
            "Last rotation:     2026-11-30T10:00:00Z (Scheduled)",
            "Next rotation:     2026-12-01T10:00:00Z (in 30m)",
            "KID           ALG     STATE     CREATED                ACTIVATES              RETIRED                PRUNE AFTER",
            "kid-pending   ES256   Pending   2026-12-01T09:00:00Z   2026-12-01T10:00:00Z   -                      -",
            "kid-old       ES256   Retired   2026-11-29T09:00:00Z   2026-11-29T10:00:00Z   2026-11-30T10:00:00Z   2026-11-30T11:01:00Z",
            "Ready   True     KeySetPublished   23h     2 keys published",
            "30m         Normal   KeyCreated   1       KeyCreated happened",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn status_shows_each_published_copy_with_its_kids_and_error() {
        let mut p = policy(two_keys(), &[]);
        let status = p.status.as_mut().unwrap();
        status.publication = serde_json::from_value(serde_json::json!([
            {"url": "s3://bucket-a/cluster", "publishedDigest": "sha256:00",
             "kids": ["kid-pending", "kid-active"],
             "lastPublishedTime": "2026-12-01T09:00:00Z", "lastVerifiedTime": "2026-12-01T09:29:00Z"},
            {"url": "s3://bucket-b", "error": "s3://bucket-b: the bucket does not exist"}
        ]))
        .unwrap();
        let report = StatusReport::new(&p, &[], 10);
        let text = report.render(now());
        assert!(text.contains("\nPublished copies:\n"), "{text}");
        let line = |url: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(url))
                .unwrap_or_else(|| panic!("no row for {url}: {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("s3://bucket-a/cluster"),
            "s3://bucket-a/cluster kid-pending,kid-active 2026-12-01T09:00:00Z 60s -"
        );
        assert!(
            line("s3://bucket-b").ends_with("- - - s3://bucket-b: the bucket does not exist"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["publication"][1]["url"], "s3://bucket-b");
    }

    #[test]
    fn status_json_uses_the_api_field_names() {
        let report = StatusReport::new(&policy(two_keys(), &["gone"]), &[], 10);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["activeKeyID"], "kid-active");
        assert_eq!(json["jwksURI"], serde_json::Value::Null);
        assert_eq!(json["revokedKeyIDs"], serde_json::json!(["gone"]));
        assert_eq!(json["keys"][2]["pruneAfter"], "2026-11-30T11:01:00Z");
        assert_eq!(json["conditions"][0]["reason"], "KeySetPublished");
        assert_eq!(json["events"], serde_json::json!([]));
    }

    #[test]
    fn a_policy_without_status_renders_placeholders() {
        let mut p = policy(two_keys(), &[]);
        p.status = None;
        let text = StatusReport::new(&p, &[], 10).render(now());
        assert!(text.contains("Active key:        -"), "{text}");
        assert!(text.contains("Keys:\n  (none yet)"), "{text}");
        assert!(text.contains("Events:\n  (none)"), "{text}");
    }

    #[test]
    fn revocation_adds_a_known_kid_and_refuses_an_unknown_one() {
        let p = policy(two_keys(), &["older"]);
        assert_eq!(
            plan_revocation(&p, "kid-old").unwrap(),
            Revocation::Revoke {
                revoked: vec!["older".into(), "kid-old".into()],
                state: KeyStateName::Retired
            }
        );
        assert_eq!(
            plan_revocation(&p, "older").unwrap(),
            Revocation::AlreadyRevoked
        );
        let err = plan_revocation(&p, "nope").unwrap_err().to_string();
        assert!(
            err.contains("has no key nope (its keys: kid-pending, kid-active, kid-old)"),
            "{err}"
        );
        let empty = policy(serde_json::json!([]), &[]);
        assert!(
            plan_revocation(&empty, "x")
                .unwrap_err()
                .to_string()
                .contains("(its keys: none)")
        );
    }

    #[test]
    fn confirmation_needs_an_explicit_yes() {
        for (answer, yes) in [
            ("y\n", true),
            ("YES\n", true),
            (" yes \n", true),
            ("\n", false),
            ("n\n", false),
            ("yep\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let got = confirm(&mut answer.as_bytes(), &mut out, "Sure? ").unwrap();
            assert_eq!(got, yes, "{answer:?}");
            assert_eq!(out, b"Sure? ");
        }
        let prompt = confirmation_prompt("team-a", "api", "kid-active", KeyStateName::Active);
        assert!(prompt.contains("ACTIVE key"), "{prompt}");
        assert!(prompt.ends_with("[y/N]: "), "{prompt}");
    }
}
