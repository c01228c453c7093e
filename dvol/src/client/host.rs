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
        if addr.contains('/') || split_tcp(addr).is_none() {
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

/// `HOST:PORT` (HOST may be a bracketed IPv6 address) as its host and port; `None` unless
/// both are there and the port is a number.
pub fn split_tcp(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_hosts_need_a_numeric_port() {
        assert_eq!(split_tcp("10.0.0.1:7000"), Some(("10.0.0.1", 7000)));
        assert_eq!(split_tcp("[::1]:7000"), Some(("[::1]", 7000)));
        assert_eq!(split_tcp("node:x"), None);
        assert_eq!(split_tcp(":7000"), None);
        assert!(Host::parse("tcp://node:http").is_err());
        assert!(matches!(Host::parse("tcp://node:7000"), Ok(Host::Tcp(a)) if a == "node:7000"));
        assert!(matches!(Host::parse("/run/x.sock"), Ok(Host::Unix(_))));
    }
}
