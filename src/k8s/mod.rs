//! The Kubernetes adapter: the only place that talks to the API server.
//!
//! [`secret`] and [`status`] are pure (what a Secret means, what status should
//! say); the reconciler gathers, calls the lifecycle planner, writes the whole
//! key set as one object with a resourceVersion precondition, and records
//! status and Events.

pub mod secret;
pub mod status;
