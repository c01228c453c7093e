//! A bare HTTP/1.1 request over a unix socket, for the sockets that are not dvol's REST API
//! (the Docker Engine's, the plugin socket), with a deadline so a hung peer fails the check
//! instead of hanging it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest a peer may take to accept, read and answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// The most of an answer that is read.
const MAX_ANSWER: u64 = 64 * 1024;

/// An HTTP answer: its status and its body as text (unframed: a chunked body keeps its chunk
/// sizes, which a check looking for a word does not mind).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// Sends `METHOD TARGET` with an empty body to the unix socket `socket` and reads the answer.
pub fn request(socket: &Path, method: &str, target: &str) -> std::io::Result<Answer> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer is not HTTP (another program listens there)",
        )
    })
}

/// The status and body of a raw HTTP answer.
fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_other_bytes_refused() {
        let answer = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK").unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "OK"));
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_none());
        assert!(parse(b"").is_none());
    }
}
