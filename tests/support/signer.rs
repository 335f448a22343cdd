//! The gRPC API of `jwks-operator signer` (kube-apiserver's
//! ExternalJWTSigner service) over its Unix socket, as kube-apiserver calls it.

use std::path::Path;

use jwks_operator::signer::pb::FetchKeysRequest;
use jwks_operator::signer::pb::external_jwt_signer_client::ExternalJwtSignerClient;
use tonic::transport::Channel;

use super::uds::uds_channel;

/// A client of the signer listening on the Unix socket `socket`.
pub async fn signer_client(socket: &Path) -> Result<ExternalJwtSignerClient<Channel>, String> {
    let channel = uds_channel(socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    Ok(ExternalJwtSignerClient::new(channel))
}

/// The kids FetchKeys lists now (what kube-apiserver verifies tokens with).
pub async fn fetch_kids(socket: &Path) -> Result<Vec<String>, String> {
    let keys = signer_client(socket)
        .await?
        .fetch_keys(FetchKeysRequest {})
        .await
        .map_err(|e| format!("FetchKeys: {e}"))?
        .into_inner()
        .keys;
    Ok(keys.into_iter().map(|k| k.key_id).collect())
}
