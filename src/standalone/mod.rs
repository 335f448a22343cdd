//! Standalone mode: policies from YAML files, keys in a local state
//! directory, the same HTTP servers as in Kubernetes.

pub mod policies;
