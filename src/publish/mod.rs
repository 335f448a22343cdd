//! Publication of the public keys to object storage (`spec.publish`): S3,
//! Azure Blob, GCS and local directories, through `object_store`.
//!
//! - [`target`] resolves `spec.publish[]` (pure);
//! - [`documents`] builds what a copy holds: the JWK Set, the discovery
//!   document, their SHA-256 digests (pure);
//! - [`credentials`] reads environment-style credentials, redacted;
//! - [`copy`] writes a copy conditionally, reads it back, and repairs it.
//!
//! The order rules (a key signs only after every copy is confirmed to hold
//! it; a pruned key leaves every copy before the stored set) are decided
//! from [`Confirmations`], which the engine keeps and the planner reads.
//! See docs/publication.md.

pub mod copy;
pub mod credentials;
pub mod documents;
pub mod target;
pub mod tracker;

pub use copy::{Copy, ErrorKind, PublishError, Synced};
pub use credentials::{Credentials, CredentialsError};
pub use documents::Documents;
pub use target::{Context, CredentialSource, Mode, Scheme, Target, TargetError};
pub use tracker::{Recorded, Tracker};
