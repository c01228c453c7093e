//! Remotes (other daemons this one pushes to and clones from) and the HTTP client that calls
//! them.
//!
//! A remote is kept in the metadata database with its token and CA: the CLI hands them over
//! once (`dvol remote add`), and the daemon never answers or logs the token. Every call to a
//! remote is one HTTP/1.1 request on its own connection (TLS when the remote has a CA), with
//! the remote's bearer token.

use std::io;
use std::time::Duration;

use chrono::Utc;
use dvol_api::{AddRemote, ErrorBody, RemoteView};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::info;

use super::super::VolumeService;
use crate::error::{ServiceError, TransferError};
use crate::metadata::RemoteRecord;
use crate::tls::{connect, ConnectError, TlsClient};

/// How long connecting (and the TLS handshake) to a remote may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a remote may take to answer a call that is not an object stream.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest error body read from a remote.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The longest remote name.
const MAX_REMOTE_NAME: usize = 64;

/// A request body sent to a remote: bytes at once, or a stream.
pub(crate) type OutBody = UnsyncBoxBody<Bytes, io::Error>;

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> OutBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Checks a remote's name: letters, digits, `-`, `_`, `.`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), TransferError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_REMOTE_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(TransferError::BadRemote {
            remote: name.to_string(),
            problem: format!(
                "a remote's name is 1 to {MAX_REMOTE_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        })
    }
}

/// `tcp://HOST:PORT` into its host and port.
fn parse_url(remote: &str, url: &str) -> Result<(String, u16), TransferError> {
    let bad = |problem: &str| TransferError::BadRemote {
        remote: remote.to_string(),
        problem: format!(
            "address {url:?} {problem}; write tcp://HOST:PORT, e.g. tcp://10.0.0.2:7411"
        ),
    };
    let rest = url
        .strip_prefix("tcp://")
        .ok_or_else(|| bad("does not start with tcp://"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b':'))
    {
        return Err(bad("has no valid host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("has no valid port (1 to 65535)"))?;
    Ok((host.to_string(), port))
}

/// A remote daemon to call.
pub(crate) struct Peer {
    /// The remote's name here.
    pub name: String,
    /// Its address as given.
    pub url: String,
    host: String,
    port: u16,
    token: String,
    tls: Option<TlsClient>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Peer {
    fn from_record(record: &RemoteRecord) -> Result<Peer, TransferError> {
        let (host, port) = parse_url(&record.name, &record.url)?;
        let tls = match &record.ca_pem {
            Some(pem) => Some(TlsClient::from_ca_pem(pem.as_bytes()).map_err(|e| {
                TransferError::BadRemote {
                    remote: record.name.clone(),
                    problem: format!("its CA: {e}"),
                }
            })?),
            None => None,
        };
        Ok(Peer {
            name: record.name.clone(),
            url: record.url.clone(),
            host,
            port,
            token: record.token.clone(),
            tls,
        })
    }

    pub(super) fn unreachable(&self, reason: impl ToString) -> TransferError {
        TransferError::Unreachable {
            remote: self.name.clone(),
            url: self.url.clone(),
            reason: reason.to_string(),
            transient: true,
        }
    }

    /// A connection that could not be made: worth trying again unless TLS refused it.
    fn not_connected(&self, e: ConnectError) -> TransferError {
        let transient = matches!(
            e,
            ConnectError::Resolve { .. }
                | ConnectError::Connect { .. }
                | ConnectError::TimedOut { .. }
        );
        TransferError::Unreachable {
            remote: self.name.clone(),
            url: self.url.clone(),
            reason: e.to_string(),
            transient,
        }
    }

    /// What the remote answered that is not the protocol.
    pub fn protocol(&self, problem: impl ToString) -> TransferError {
        TransferError::Protocol {
            remote: self.name.clone(),
            problem: problem.to_string(),
        }
    }

    /// Sends one request and returns the answer's head and body once the remote answered
    /// with success; an error answer becomes [`TransferError::Refused`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: OutBody,
    ) -> Result<Response<Incoming>, TransferError> {
        let stream = connect(&self.host, self.port, self.tls.as_ref(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| self.not_connected(e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .header("dvol-transfer", dvol_api::TRANSFER_PROTOCOL.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(body)
            .map_err(|e| self.protocol(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.headers().contains_key(dvol_api::API_HEADER) {
            return Err(self.protocol(format!(
                "{} answered HTTP {} without dvol's header: it is not a dvol daemon's --listen address",
                self.url,
                response.status().as_u16()
            )));
        }
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (code, message, containers) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => (Some(error.code), error.message, error.containers),
            Err(_) => (
                None,
                String::from_utf8_lossy(&body).trim().to_string(),
                Vec::new(),
            ),
        };
        Err(TransferError::Refused {
            remote: self.name.clone(),
            status,
            code,
            message,
            containers,
        })
    }

    /// Sends `body` and returns the whole answer, within the call time-out.
    pub async fn bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, TransferError> {
        let work = async {
            let response = self
                .call(Method::POST, path, content_type, &[], full(body))
                .await?;
            response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| self.unreachable(e))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {CALL_TIMEOUT:?}")))?
    }

    /// Asks for the objects of `request` (`/v1/transfer/fetch/objects`): the answer's body is
    /// the object stream.
    pub async fn fetch_objects(
        &self,
        request: &dvol_api::FetchRequest,
    ) -> Result<Response<Incoming>, TransferError> {
        let body = serde_json::to_vec(request).map_err(|e| self.protocol(e))?;
        self.call(
            Method::POST,
            "/v1/transfer/fetch/objects",
            "application/json",
            &[],
            full(body),
        )
        .await
    }

    /// Posts `request` as JSON and decodes the JSON answer.
    pub async fn json<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        request: &Q,
    ) -> Result<A, TransferError> {
        let body = serde_json::to_vec(request).map_err(|e| self.protocol(e))?;
        let answer = self.bytes(path, "application/json", body).await?;
        serde_json::from_slice(&answer).map_err(|e| {
            self.protocol(format!(
                "its answer to {path} is not what this version expects: {e}"
            ))
        })
    }
}

impl VolumeService {
    /// Records a remote. Adding the same remote again (same address, token and CA) changes
    /// nothing; another of the same name is refused.
    pub fn add_remote(&self, request: AddRemote) -> Result<RemoteView, ServiceError> {
        check_name(&request.name)?;
        parse_url(&request.name, &request.url)?;
        let token = request.token.trim().to_string();
        if token.is_empty() {
            return Err(TransferError::BadRemote {
                remote: request.name,
                problem: "the token is empty; give the remote daemon's token (--token-file)".into(),
            }
            .into());
        }
        let record = RemoteRecord {
            name: request.name,
            url: request.url,
            token,
            ca_pem: request.ca_pem,
            added_at: Utc::now(),
        };
        Peer::from_record(&record)?;
        if !self.metadata.add_remote(&record)? {
            let existing = self.remote_record(&record.name)?;
            if existing.url == record.url
                && existing.token == record.token
                && existing.ca_pem == record.ca_pem
            {
                return Ok(remote_view(&existing));
            }
            return Err(TransferError::RemoteExists {
                remote: existing.name,
                url: existing.url,
            }
            .into());
        }
        info!(remote = %record.name, url = %record.url, tls = record.ca_pem.is_some(), "remote added");
        Ok(remote_view(&record))
    }

    /// The remotes, by name.
    pub fn remotes(&self) -> Result<Vec<RemoteView>, ServiceError> {
        Ok(self.metadata.remotes()?.iter().map(remote_view).collect())
    }

    /// Forgets a remote.
    pub fn remove_remote(&self, name: &str) -> Result<(), ServiceError> {
        if self.metadata.remove_remote(name)? {
            info!(remote = %name, "remote removed");
            Ok(())
        } else {
            Err(TransferError::UnknownRemote {
                remote: name.to_string(),
            }
            .into())
        }
    }

    fn remote_record(&self, name: &str) -> Result<RemoteRecord, ServiceError> {
        self.metadata
            .remotes()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                TransferError::UnknownRemote {
                    remote: name.to_string(),
                }
                .into()
            })
    }

    /// The remote `name`, ready to call.
    /// In cluster mode a node of the cluster is a remote too, by its node name, unless a
    /// remote of that name was added.
    pub(crate) fn peer(&self, name: &str) -> Result<Peer, ServiceError> {
        let record = match self.remote_record(name) {
            Err(ServiceError::Transfer(e)) if matches!(*e, TransferError::UnknownRemote { .. }) => {
                match self.cluster_node_remote(name) {
                    Some(node) => node,
                    None => return Err(ServiceError::Transfer(e)),
                }
            }
            found => found?,
        };
        Ok(Peer::from_record(&record)?)
    }
}

fn remote_view(record: &RemoteRecord) -> RemoteView {
    RemoteView {
        name: record.name.clone(),
        url: record.url.clone(),
        tls: record.ca_pem.is_some(),
        added_at: record.added_at.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_host_and_port() {
        assert_eq!(
            parse_url("b", "tcp://10.77.0.2:7411").unwrap(),
            ("10.77.0.2".to_string(), 7411)
        );
        assert_eq!(
            parse_url("b", "tcp://[::1]:7411").unwrap(),
            ("::1".to_string(), 7411)
        );
        assert_eq!(
            parse_url("b", "tcp://host-b.example:1").unwrap(),
            ("host-b.example".to_string(), 1)
        );
        for bad in [
            "http://10.0.0.1:1",
            "tcp://10.0.0.1",
            "tcp://:7411",
            "tcp://10.0.0.1:0",
            "tcp://10.0.0.1:99999",
            "tcp://a/b:1",
        ] {
            let e = parse_url("b", bad).unwrap_err().to_string();
            assert!(e.contains("tcp://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn remote_names_are_short_words() {
        assert!(check_name("b").is_ok());
        assert!(check_name("host-b.dc_1").is_ok());
        for bad in ["", "-b", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
