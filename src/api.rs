//! The `KeyRotationPolicy` custom resource.
