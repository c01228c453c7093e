//! A small HTTP/1 client for the daemon's REST API, over a unix socket or TCP.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use dvol_plugin::progress::{ProgressEvent, StreamLine, NDJSON};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Host {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP.
    Tcp(String),
}

impl Host {
    /// Parses `unix:///path`, `/path`, `tcp://host:port`, `http://host:port` or `host:port`.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(path) = text.strip_prefix("unix://") {
            return Ok(Host::Unix(path.into()));
        }
        if text.starts_with('/') {
            return Ok(Host::Unix(text.into()));
        }
        let addr = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        if addr.is_empty() || !addr.contains(':') || addr.contains('/') {
            bail!("invalid --host {text:?}: use unix:///path/to.sock or tcp://HOST:PORT");
        }
        Ok(Host::Tcp(addr.to_string()))
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A REST API client.
pub struct Client {
    host: Host,
    token: Option<String>,
}

/// Percent-encodes one path segment.
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

/// Starts an HTTP/1 connection over `stream`, driven by a background task.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

impl Client {
    /// A client for `host`, sending `token` as a bearer token if given.
    pub fn new(host: Host, token: Option<String>) -> Self {
        Client { host, token }
    }

    /// Sends a request; `accept` is the media type asked for, if not plain JSON.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
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
                handshake(
                    tokio::net::TcpStream::connect(addr)
                        .await
                        .with_context(unreachable)?,
                )
                .await?
            }
        };
        let host_header = match &self.host {
            Host::Unix(_) => "localhost".to_string(),
            Host::Tcp(addr) => addr.clone(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host_header);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Some(value) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(value)?)
            }
            None => Bytes::new(),
        };
        sender
            .send_request(request.body(Full::new(payload))?)
            .await
            .with_context(unreachable)
    }

    /// Sends a request and decodes a successful JSON answer; an error answer becomes an error
    /// carrying the daemon's message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let response = self.open(method, path, body, None).await?;
        decode(response).await
    }

    /// Like [`Client::call`], asking the daemon to stream the operation's progress: `progress`
    /// sees each event as it arrives.
    pub async fn call_with_progress<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        mut progress: impl FnMut(&ProgressEvent),
    ) -> Result<T> {
        let response = self.open(method, path, body, Some(NDJSON)).await?;
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(NDJSON));
        if !response.status().is_success() || !streamed {
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
                let line: StreamLine<Value> = serde_json::from_slice(&line)
                    .context("the daemon sent a progress line dvol could not read")?;
                match line {
                    StreamLine::Progress(event) => progress(&event),
                    StreamLine::Result(value) => {
                        return serde_json::from_value(value)
                            .context("the daemon sent an answer dvol could not read")
                    }
                    StreamLine::Error(error) => return Err(anyhow!("{}", error.message)),
                }
            }
        }
        bail!("the daemon's answer ended before the operation's outcome; `dvol log` and the daemon's log show whether the operation happened")
    }
}

/// Decodes a successful JSON answer; an error answer becomes an error carrying the daemon's
/// message.
async fn decode<T: DeserializeOwned>(response: Response<Incoming>) -> Result<T> {
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        return Err(anyhow!("{message}"));
    }
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).context("the daemon sent an answer dvol could not read")
}
