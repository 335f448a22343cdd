//! A tonic channel over a Unix socket: how kube-apiserver reaches the
//! service-account signer. One file for the integration tests
//! (`support::uds`) and the signer's unit tests (`src/signer/tests.rs`
//! includes it by path).

use std::path::{Path, PathBuf};

use tonic::transport::{Channel, Endpoint};

/// A gRPC channel to the server listening on the Unix socket `path`.
pub async fn uds_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
