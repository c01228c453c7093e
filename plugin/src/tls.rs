//! Placeholder: plain TCP only.
#![allow(missing_docs)]
use std::time::Duration;
use tokio::net::TcpStream;

pub struct TlsClient;
impl TlsClient {
    pub fn from_ca_pem(_pem: &[u8]) -> Result<TlsClient, String> {
        Err("TLS is not available in this build".into())
    }
}
pub type PeerStream = TcpStream;
pub async fn connect(
    host: &str,
    port: u16,
    _tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<PeerStream, String> {
    tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())
}
