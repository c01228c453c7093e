//! HTTP/1 to the daemon over a unix socket or TCP: one connection per request, JSON answers
//! decoded into their types, error answers as [`DaemonError`], and the NDJSON progress stream
//! of the long calls.

use anyhow::{anyhow, bail, Context, Result};
use dvol_api::{ErrorBody, ProgressEvent, StreamLine, NDJSON};
use dvol_plugin::tls::{TlsClient, PLAIN_TO_TLS_HINT};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::host::{split_tcp, Host};

/// How long connecting to a daemon over TCP may take, TLS handshake included (each step).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A failure the daemon answered: its message is what the user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonError {
    /// The HTTP status; `200` when the failure came as the last line of a progress stream.
    pub status: u16,
    /// The error's stable code, when the body was an [`ErrorBody`].
    pub code: Option<String>,
    /// The daemon's message, or the raw text of a body that was no [`ErrorBody`].
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DaemonError {}

impl DaemonError {
    /// The error an answer with `status` and `body` stands for.
    fn from_body(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => DaemonError {
                status,
                code: Some(error.code),
                message: error.message,
            },
            Err(_) => DaemonError {
                status,
                code: None,
                message: String::from_utf8_lossy(body).trim().to_string(),
            },
        }
    }
}

/// Percent-encodes one path segment or query value.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends requests to one daemon, with a bearer token if given, over TLS if given.
pub struct Transport {
    host: Host,
    token: Option<String>,
    tls: Option<TlsClient>,
}

/// Starts an HTTP/1 connection over `stream`, driven by a background task.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

impl Transport {
    /// A transport to `host`.
    pub fn new(host: Host, token: Option<String>) -> Self {
        Transport {
            host,
            token,
            tls: None,
        }
    }

    /// Speaks TLS to a TCP daemon, trusting `tls`'s CA.
    pub fn with_tls(self, tls: TlsClient) -> Self {
        Transport {
            tls: Some(tls),
            ..self
        }
    }

    /// Sends a request with an optional JSON `body`; `accept` is the media type asked for, if
    /// not plain JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let unreachable = || {
            format!(
                "cannot reach the dvol daemon at {}; is `dvol daemon` running? (--host or DVOL_HOST picks another)",
                self.host
            )
        };
        let mut sender = match &self.host {
            Host::Unix(path) => {
                handshake(
                    tokio::net::UnixStream::connect(path)
                        .await
                        .with_context(unreachable)?,
                )
                .await?
            }
            Host::Tcp(addr) => {
                let (host, port) = split_tcp(addr)
                    .with_context(|| format!("invalid daemon address {addr:?}: use HOST:PORT"))?;
                let stream =
                    dvol_plugin::tls::connect(host, port, self.tls.as_ref(), CONNECT_TIMEOUT)
                        .await?;
                handshake(stream).await?
            }
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.host.header());
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Bytes::from(json)
            }
            None => Bytes::new(),
        };
        let plain_tcp = matches!(self.host, Host::Tcp(_)) && self.tls.is_none();
        let response = sender
            .send_request(request.body(Full::new(payload))?)
            .await
            .map_err(|e| match plain_tcp && e.is_parse() {
                true => anyhow!(e).context(format!("{}: {PLAIN_TO_TLS_HINT}", self.host)),
                false => anyhow!(e).context(unreachable()),
            })?;
        if !response.headers().contains_key(dvol_api::API_HEADER) {
            bail!("{}", not_dvol(&self.host, &response));
        }
        Ok(response)
    }
}

/// What to say of an answer that did not come from dvol's REST API.
fn not_dvol(host: &Host, response: &Response<Incoming>) -> String {
    let who = response
        .headers()
        .get(header::SERVER)
        .and_then(|v| v.to_str().ok())
        .map(|server| format!(", from {server}"))
        .unwrap_or_default();
    format!(
        "{host} is not a dvol API socket (it answered HTTP {}{who}, without dvol's header); point --host (or DVOL_HOST) at the daemon's REST API: unix:///run/dvol/dvol.sock by default, or its --listen address; not the Docker Engine's socket or dvol's plugin socket",
        response.status().as_u16()
    )
}

/// The body of a successful answer; an error answer becomes a [`DaemonError`].
pub async fn success_body(response: Response<Incoming>) -> Result<Bytes> {
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(DaemonError::from_body(status.as_u16(), &bytes).into());
    }
    Ok(bytes)
}

/// Decodes a successful JSON answer; an error answer becomes a [`DaemonError`].
pub async fn decode<T: DeserializeOwned>(response: Response<Incoming>) -> Result<T> {
    let bytes = success_body(response).await?;
    serde_json::from_slice(&bytes).context("the daemon sent an answer dvol could not read")
}

/// Decodes the answer of a call that asked for its progress: a progress stream (each event
/// goes to `progress` as it arrives, then the result or the error), or a plain answer when the
/// daemon refused the call before it began.
pub async fn decode_stream<T: DeserializeOwned>(
    response: Response<Incoming>,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<T> {
    let status = response.status();
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(NDJSON));
    if !status.is_success() || !streamed {
        return decode(response).await;
    }
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context(
            "the daemon's answer broke off; `dvol log` and the daemon's log show whether the operation happened",
        )?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line: StreamLine<serde_json::Value> = serde_json::from_slice(&line)
                .context("the daemon sent a progress line dvol could not read")?;
            match line {
                StreamLine::Progress(event) => progress(&event),
                StreamLine::Result(value) => {
                    return serde_json::from_value(value)
                        .context("the daemon sent an answer dvol could not read")
                }
                StreamLine::Error(error) => {
                    return Err(anyhow!(DaemonError {
                        status: status.as_u16(),
                        code: Some(error.code),
                        message: error.message,
                    }))
                }
            }
        }
    }
    bail!("the daemon's answer ended before the operation's outcome; `dvol log` and the daemon's log show whether the operation happened")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_the_daemon_message() {
        let body = br#"{"error":{"code":"not_found","message":"no volume x"}}"#;
        let e = DaemonError::from_body(404, body);
        assert_eq!(e.code.as_deref(), Some("not_found"));
        assert_eq!(e.to_string(), "no volume x");
        let raw = DaemonError::from_body(502, b" bad gateway\n");
        assert_eq!((raw.code, raw.message.as_str()), (None, "bad gateway"));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(segment("HEAD^"), "HEAD%5E");
    }
}
