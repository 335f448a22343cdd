//! The Kubernetes adapter: the only place that talks to the API server.
//!
//! [`secret`] and [`status`] are pure (what a Secret means, what status should
//! say); [`store`] is the engine's store over the policy's Secret (writes
//! conditional on its resourceVersion); [`reconcile`] runs the
//! [`engine`](crate::engine) with that store and a reporter that records
//! status, Events and the public ConfigMap; [`serving`] keeps every replica's
//! HTTP snapshot in step with the cluster; [`leader`] keeps a leader from
//! writing past its Lease; [`run`] wires servers, index, controller and leader
//! election together; [`admin`] backs the human commands `status` and `revoke`.

pub mod admin;
pub mod leader;
pub mod provider;
pub mod reconcile;
pub mod referenced;
pub mod request;
pub mod run;
pub mod secret;
pub mod serving;
pub mod status;
pub mod store;
