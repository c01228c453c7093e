//! Where the daemon listens: a unix socket or a TCP address, as `--host` names it.

use std::path::PathBuf;

use anyhow::{bail, Result};

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

    /// The `Host` header of a request: the address over TCP, `localhost` over a unix socket.
    pub fn header(&self) -> String {
        match self {
            Host::Unix(_) => "localhost".to_string(),
            Host::Tcp(addr) => addr.clone(),
        }
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
