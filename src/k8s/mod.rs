//! The Kubernetes adapter: the only place that talks to the API server.
//!
//! [`secret`] and [`status`] are pure (what a Secret means, what status should
//! say); [`reconcile`] gathers, calls the lifecycle planner, writes the whole
//! key set as one object with a resourceVersion precondition, and records
//! status and Events; [`serving`] keeps every replica's HTTP snapshot in step
//! with the cluster; [`run`] wires servers, index, controller and leader
//! election together.

pub mod reconcile;
pub mod run;
pub mod secret;
pub mod serving;
pub mod status;
