//! TLS for the daemon's TCP listener, and the TCP/TLS connector its clients use.
//!
//! - [`server_config`] loads the daemon's certificate chain and private key (PEM files, as
//!   `dvol daemon --tls-cert F --tls-key F` names them) into a rustls server configuration.
//! - [`TlsClient`] is a client configuration that trusts only the CA certificates it is given
//!   (`--ca F` on the CLI; a daemon calling another one): no system roots, so a daemon is
//!   reached only if its certificate was signed by that CA.
//! - [`connect`] opens a TCP connection to `host:port`, plain or with TLS, within a time-out,
//!   and returns a [`PeerStream`] to speak HTTP over. Its [`ConnectError`] says what failed in
//!   words a user can act on: an unknown issuer, a peer that does not speak TLS, a time-out.
//!
//! Both sides use rustls with the *ring* provider, chosen explicitly: no process-wide default
//! provider needs installing.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, InconsistentKeys, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What to tell a user whose plain-TCP client got an answer that is no HTTP, as a TLS server
/// gives: its handshake alert. Callers that see the HTTP answer fail to parse over a
/// [`PeerStream::Plain`] add this to the error.
pub const PLAIN_TO_TLS_HINT: &str =
    "the peer answered with something other than HTTP: it probably serves TLS on that \
     address; give its CA certificate with --ca";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path} (given as {flag}): {cause}; check the path and its permissions")]
    Read {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{origin} is not valid PEM: {cause}; give a PEM file (-----BEGIN ...-----)")]
    Pem {
        /// The file (with its flag) or the text the PEM came from.
        origin: String,
        /// Why.
        cause: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----); {hint}")]
    NoCertificate {
        /// The file (with its flag) or the text the PEM came from.
        origin: String,
        /// What to give instead.
        hint: &'static str,
    },
    /// The key file holds no private key.
    #[error(
        "{origin} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC); give \
         the private key the certificate was made for"
    )]
    NoKey {
        /// The file (with its flag).
        origin: String,
    },
    /// The private key does not belong to the certificate.
    #[error(
        "the private key in {key} does not belong to the certificate in {cert}; give the key \
         the certificate was made for (or the certificate made for this key)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The private key cannot be used.
    #[error("the private key in {key} cannot be used with its certificate: {cause}")]
    BadKey {
        /// The key file.
        key: PathBuf,
        /// Why.
        cause: rustls::Error,
    },
    /// A CA certificate cannot be used as a trust anchor.
    #[error("the CA certificate in {origin} cannot be used: {cause}; give a CA certificate")]
    BadCa {
        /// The file (with its flag) or the text the PEM came from.
        origin: String,
        /// Why.
        cause: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Config(rustls::Error),
}

/// The crypto provider of both sides.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the file `flag` names.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        cause,
    })
}

/// The certificates in `pem`, none an error; `origin` names where the PEM came from, `hint`
/// what to give instead of a file without any.
fn certificates(
    pem: &[u8],
    origin: &str,
    hint: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::Pem {
            origin: origin.to_string(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_string(),
            hint,
        });
    }
    Ok(certs)
}

/// `path` and the flag it was given with, for messages.
fn origin(path: &Path, flag: &str) -> String {
    format!("{} (given as {flag})", path.display())
}

/// The server configuration of the daemon's TCP listener: the PEM certificate chain in `cert`
/// (the server's own certificate first) and the PEM private key in `key` (PKCS#8, PKCS#1 or
/// SEC1). Clients are not asked for certificates: they authenticate with the bearer token.
///
/// Fails, naming the file, when a file cannot be read, holds no certificate or no key, or the
/// key does not belong to the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(
        &read("--tls-cert", cert)?,
        &origin(cert, "--tls-cert"),
        "give the certificate chain, the server's own certificate first",
    )?;
    let key_origin = origin(key, "--tls-key");
    let private_key = match PrivateKeyDer::from_pem_slice(&read("--tls-key", key)?) {
        Ok(private_key) => private_key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey { origin: key_origin })
        }
        Err(cause) => {
            return Err(TlsError::Pem {
                origin: key_origin,
                cause,
            })
        }
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                }
            }
            cause => TlsError::BadKey {
                key: key.to_path_buf(),
                cause,
            },
        })?;
    Ok(Arc::new(config))
}

/// A TLS client configuration trusting only given CA certificates. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// A client trusting exactly the CA certificates in `pem` (no system roots).
    pub fn from_ca_pem(pem: &[u8]) -> Result<TlsClient, TlsError> {
        Self::from_pem_named(pem, "the CA certificate given")
    }

    /// A client trusting exactly the CA certificates in the PEM file `path` (`--ca`); errors
    /// name the file.
    pub fn from_ca_file(path: &Path) -> Result<TlsClient, TlsError> {
        Self::from_pem_named(&read("--ca", path)?, &origin(path, "--ca"))
    }

    fn from_pem_named(pem: &[u8], origin: &str) -> Result<TlsClient, TlsError> {
        let mut roots = RootCertStore::empty();
        let hint = "give the CA certificate that signed the daemon's certificate";
        for cert in certificates(pem, origin, hint)? {
            roots.add(cert).map_err(|cause| TlsError::BadCa {
                origin: origin.to_string(),
                cause,
            })?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// A connection to a peer: plain TCP, or TLS over TCP. Read and write it as one stream.
#[derive(Debug)]
pub enum PeerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, the handshake done.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {cause}; check the host name")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        cause: io::Error,
    },
    /// No address of the host accepted the connection.
    #[error("cannot connect to {addr}: {cause}; is the daemon listening there (--listen)?")]
    Connect {
        /// The (last) address tried, or `host:port` when there was none.
        addr: String,
        /// Why.
        cause: io::Error,
    },
    /// The connection or the TLS handshake did not finish in time.
    #[error("{step} {addr} did not finish within {} ms; check the address and the network", timeout.as_millis())]
    TimedOut {
        /// What timed out: connecting to, or the TLS handshake with.
        step: &'static str,
        /// The address.
        addr: String,
        /// The time-out.
        timeout: Duration,
    },
    /// The host is no valid TLS server name.
    #[error("{host} is neither a DNS name nor an IP address, so it cannot be checked against a certificate")]
    ServerName {
        /// The host.
        host: String,
    },
    /// The peer answered the TLS handshake with something that is no TLS.
    #[error("TLS handshake with {addr} failed: the peer does not speak TLS on that address: drop --ca or check the address")]
    NotTls {
        /// The address.
        addr: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// The address.
        addr: String,
        /// Why, in words.
        reason: String,
    },
}

/// Connects to `host:port` within `timeout` (each of the TCP connection and the TLS handshake
/// gets that long), with TCP_NODELAY set, and with `tls` runs the TLS handshake checking the
/// peer's certificate against `host` (a DNS name or an IP address, which may be bracketed).
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<PeerStream, ConnectError> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let display = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let timed_out = |step| ConnectError::TimedOut {
        step,
        addr: display.clone(),
        timeout,
    };
    let tcp = tokio::time::timeout(timeout, connect_tcp(host, port, &display))
        .await
        .map_err(|_| timed_out("connecting to"))??;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(PeerStream::Plain(tcp));
    };
    let name = ServerName::try_from(host.to_string()).map_err(|_| ConnectError::ServerName {
        host: host.to_string(),
    })?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(timed_out("the TLS handshake with")),
        Ok(Ok(stream)) => Ok(PeerStream::Tls(Box::new(stream))),
        Ok(Err(e)) => Err(handshake_error(display, &e)),
    }
}

/// Resolves `host` and connects to its first address that accepts.
async fn connect_tcp(host: &str, port: u16, display: &str) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|cause| ConnectError::Resolve {
            host: host.to_string(),
            cause,
        })?
        .collect();
    let mut last = ConnectError::Connect {
        addr: display.to_string(),
        cause: io::Error::new(io::ErrorKind::NotFound, "the name has no address"),
    };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(cause) => {
                last = ConnectError::Connect {
                    addr: addr.to_string(),
                    cause,
                }
            }
        }
    }
    Err(last)
}

/// The [`ConnectError`] a failed client handshake with `addr` stands for.
fn handshake_error(addr: String, error: &io::Error) -> ConnectError {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match rustls_error {
        // A bad signature: a CA of the same name as the one given, but another key.
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => "the peer's certificate is not signed by the CA given (--ca)".to_string(),
        // webpki's own error comes wrapped, known only by its name.
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
            if other.to_string().contains("CaUsedAsEndEntity") =>
        {
            "the peer's certificate is a CA certificate (basicConstraints CA:TRUE), which \
             cannot be a server's own: give the daemon a certificate made with CA:FALSE, or \
             one signed by the CA"
                .to_string()
        }
        Some(rustls::Error::InvalidMessage(_)) => return ConnectError::NotTls { addr },
        Some(e) => e.to_string(),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake: it may not speak TLS on \
             that address (drop --ca or check the address)"
                .to_string()
        }
        None => error.to_string(),
    };
    ConnectError::Handshake { addr, reason }
}

/// Certificates for tests: a CA, a server certificate for 127.0.0.1 it signed, and an
/// unrelated CA.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::path::PathBuf;

    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    /// The PEM files of a test set-up, in a temporary directory.
    pub struct Pki {
        /// Holds the files.
        pub dir: tempfile::TempDir,
        /// The CA's certificate (PEM).
        pub ca: Vec<u8>,
        /// Another CA's certificate (PEM), which signed nothing here.
        pub other_ca: Vec<u8>,
        /// The server's certificate file, for 127.0.0.1, signed by `ca`.
        pub cert: PathBuf,
        /// The server's key file.
        pub key: PathBuf,
    }

    fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap(), key)
    }

    /// A self-signed CA certificate for 127.0.0.1 and its key, used as a server's own: its
    /// PEM and the files.
    pub fn ca_as_server(dir: &std::path::Path) -> (Vec<u8>, PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join("ca-server.crt"), dir.join("ca-server.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert.pem().into_bytes(), cert_path, key_path)
    }

    /// Makes the files.
    pub fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = new_ca("dvol test CA");
        let (other_ca, _) = new_ca("another test CA");
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let cert_path = dir.path().join("server.crt");
        let key_path = dir.path().join("server.key");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Pki {
            ca: ca.pem().into_bytes(),
            other_ca: other_ca.pem().into_bytes(),
            cert: cert_path,
            key: key_path,
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A listener on 127.0.0.1 answering each connection's first bytes with `reply`, over TLS
    /// with `config`, else plain; returns its port.
    async fn server(config: Option<Arc<ServerConfig>>, reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let config = config.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    match config {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            if tls.read(&mut buf).await.unwrap_or(0) > 0 {
                                let _ = tls.write_all(reply).await;
                                let _ = tls.shutdown().await;
                            }
                        }
                        None => {
                            let mut tcp = tcp;
                            if tcp.read(&mut buf).await.unwrap_or(0) > 0 {
                                let _ = tcp.write_all(reply).await;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    /// The error of a TLS connection to `host:port` trusting the CA certificates in `ca`.
    async fn refusal(host: &str, port: u16, ca: &[u8]) -> ConnectError {
        let client = TlsClient::from_ca_pem(ca).unwrap();
        connect(host, port, Some(&client), TIMEOUT)
            .await
            .unwrap_err()
    }

    async fn tls_server(pki: &test_pki::Pki) -> u16 {
        let config = server_config(&pki.cert, &pki.key).unwrap();
        server(Some(config), b"pong").await
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_to_the_server() {
        let pki = test_pki::make();
        let port = tls_server(&pki).await;
        let client = TlsClient::from_ca_pem(&pki.ca).unwrap();
        let mut stream = connect("127.0.0.1", port, Some(&client), TIMEOUT)
            .await
            .unwrap();
        assert!(matches!(stream, PeerStream::Tls(_)));
        stream.write_all(b"ping").await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "pong");
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_is_told_so() {
        let pki = test_pki::make();
        let port = tls_server(&pki).await;
        let e = refusal("127.0.0.1", port, &pki.other_ca).await;
        assert!(
            e.to_string()
                .contains("the peer's certificate is not signed by the CA given (--ca)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_ca_certificate_as_the_servers_own_is_explained() {
        let pki = test_pki::make();
        let (pem, cert, key) = test_pki::ca_as_server(pki.dir.path());
        let port = server(Some(server_config(&cert, &key).unwrap()), b"pong").await;
        let e = refusal("127.0.0.1", port, &pem).await;
        assert!(e.to_string().contains("CA:FALSE"), "{e}");
    }

    #[tokio::test]
    async fn a_certificate_for_another_address_is_refused() {
        let pki = test_pki::make();
        let port = tls_server(&pki).await;
        let e = refusal("localhost", port, &pki.ca).await;
        assert!(matches!(e, ConnectError::Handshake { .. }), "{e}");
        assert!(e.to_string().contains("not valid for"), "{e}");
    }

    #[tokio::test]
    async fn a_tls_client_of_a_plain_server_is_told_it_does_not_speak_tls() {
        let port = server(None, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let e = refusal("127.0.0.1", port, &test_pki::make().ca).await;
        assert!(matches!(e, ConnectError::NotTls { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("the peer does not speak TLS on that address: drop --ca"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_plain_http_client_of_a_tls_server_gets_no_http_answer() {
        // The condition under which callers add PLAIN_TO_TLS_HINT: the answer does not parse.
        let pki = test_pki::make();
        let port = tls_server(&pki).await;
        let stream = connect("127.0.0.1", port, None, TIMEOUT).await.unwrap();
        assert!(matches!(stream, PeerStream::Plain(_)));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::get("/")
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let e = sender.send_request(request).await.unwrap_err();
        assert!(e.is_parse(), "{e:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connect_error_naming_the_address() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let e = connect("127.0.0.1", port, None, TIMEOUT).await.unwrap_err();
        assert!(matches!(e, ConnectError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn a_handshake_that_never_finishes_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let accepted = listener.accept().await;
            tokio::time::sleep(TIMEOUT).await;
            drop(accepted);
        });
        let client = TlsClient::from_ca_pem(&test_pki::make().ca).unwrap();
        let e = connect("127.0.0.1", port, Some(&client), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ConnectError::TimedOut { step, .. } if step == "the TLS handshake with"),
            "{e}"
        );
    }

    #[test]
    fn server_config_names_the_file_that_is_missing_or_holds_no_key() {
        let pki = test_pki::make();
        let missing = pki.dir.path().join("nope.crt");
        let e = server_config(&missing, &pki.key).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    flag: "--tls-cert",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("nope.crt"), "{e}");

        // The certificate given as the key: a PEM file, but without a key.
        let e = server_config(&pki.cert, &pki.cert).unwrap_err();
        assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("{} (given as --tls-key)", pki.cert.display())),
            "{e}"
        );

        // The key given as the certificate.
        let e = server_config(&pki.key, &pki.key).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("server.key"), "{e}");
    }

    #[test]
    fn server_config_refuses_a_key_of_another_certificate() {
        let pki = test_pki::make();
        let other = test_pki::make();
        let e = server_config(&pki.cert, &other.key).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(server_config(&pki.cert, &pki.key).is_ok());
    }

    #[test]
    fn a_ca_pem_without_certificates_is_refused() {
        let e = TlsClient::from_ca_pem(b"no PEM here").unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = TlsClient::from_ca_file(&dir.path().join("ca.pem")).unwrap_err();
        assert!(e.to_string().contains("ca.pem (given as --ca)"), "{e}");
    }
}
