//! Go/Kubernetes-style durations.
