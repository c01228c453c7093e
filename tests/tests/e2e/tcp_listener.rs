//! The REST API's TCP listener (`dvol daemon --listen`) against real TCP connections: idle
//! and half-open connections are closed after the header time-out, a flood beyond the
//! connection limit waits in the backlog without keeping a client with the token out, the
//! start warns about a listener beyond loopback (no TLS) and a token file others can read,
//! and wrong tokens of any length are refused.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dvol_tests::fixtures::*;
use dvol_tests::{is_root, parse_response, require, Daemon, HttpResponse};

/// The token every daemon here requires.
const TOKEN: &str = "tcp-listener-test-token-0123456789";

/// A daemon listening on TCP, with what the tests need to reach it.
struct TcpDaemon {
    daemon: Daemon,
    /// Where to connect (127.0.0.1 and the port, whatever address it listens on).
    addr: SocketAddr,
    /// The token file.
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a daemon listening on `ip` with `config_keys` (top-level TOML lines) in its
/// configuration and its token file in mode `token_mode`; `None` when the test skips for
/// want of root.
fn start(ip: &str, config_keys: &str, token_mode: u32) -> Option<TcpDaemon> {
    if !require("root", is_root()) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{config_keys}\ndefault_profile = \"bronze\"\n[profiles.bronze]\nbackend = \"directory\"\n"
        ),
    )
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(token_mode)).unwrap();
    let port = free_port();
    let daemon = Daemon::start_with(vec![
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        format!("{ip}:{port}"),
        "--token-file".into(),
        token_file.display().to_string(),
    ]);
    Some(TcpDaemon {
        daemon,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        token_file,
        _dir: dir,
    })
}

/// Sends `GET path` with `authorization` (the whole header value) on a new connection and
/// reads the answer to the end (the request asks to close).
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    send_get(&mut stream, path, authorization, false);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// Writes `GET path` on `stream`, kept alive or not.
fn send_get(stream: &mut TcpStream, path: &str, authorization: Option<&str>, keep_alive: bool) {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: dvol\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    if !keep_alive {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Waits until the daemon closes `stream`, reading (and returning) whatever it sends first;
/// `None` if it is still open after `limit`.
fn wait_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // A reset is a close too.
            Err(_) => return Some(received),
        }
    }
}

/// Asserts that what a closed connection received before the close is nothing or an HTTP
/// error answer (hyper may say 408), never a served request.
fn assert_refused_or_silent(received: &[u8]) {
    if received.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(received);
    let status = parse_response(received).map(|r| r.status);
    assert!(
        status.is_some_and(|s| s >= 400),
        "a connection that sent nothing got: {text:?}"
    );
}

/// The daemon's log mentions `text` (waiting a little: the log is written asynchronously).
fn log_contains(daemon: &Daemon, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if daemon.log().contains(text) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn half_open_and_idle_connections_are_closed_after_the_header_timeout() {
    let Some(tcp) = start("127.0.0.1", "tcp_header_timeout_seconds = 1", 0o600) else {
        return;
    };
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(tcp.addr).unwrap())
        .collect();
    // While they wait, the API still answers.
    assert_eq!(get(tcp.addr, "/v1/health", Some(&bearer())).status, 200);
    for (i, stream) in silent.iter_mut().enumerate() {
        let received = wait_closed(stream, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("connection {i} still open after 10 s"));
        assert_refused_or_silent(&received);
    }
    let took = opened.elapsed();
    eprintln!("40 silent connections closed after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "40 silent connections closed after {took:?}; the header time-out is 1 s"
    );

    // A kept-alive connection that goes idle after an answer is closed the same way.
    let mut kept = TcpStream::connect(tcp.addr).unwrap();
    send_get(&mut kept, "/v1/health", Some(&bearer()), true);
    let served = Instant::now();
    let received = wait_closed(&mut kept, Duration::from_secs(10))
        .expect("an idle kept-alive connection still open after 10 s");
    let idle = served.elapsed();
    eprintln!("an idle kept-alive connection closed after {idle:?}");
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(6),
        "idle kept-alive connection closed after {idle:?}"
    );
    assert_eq!(get(tcp.addr, "/v1/health", Some(&bearer())).status, 200);
    assert_alive(&tcp.daemon);
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let Some(tcp) = start("127.0.0.1", "tcp_header_timeout_seconds = 1", 0o600) else {
        return;
    };
    let mut slow = TcpStream::connect(tcp.addr).unwrap();
    let head = format!(
        "POST /v1/volumes HTTP/1.1\r\nHost: dvol\r\nAuthorization: {}\r\nContent-Length: 100\r\n\r\n{{\"na",
        bearer()
    );
    slow.write_all(head.as_bytes()).unwrap();
    let sent = Instant::now();
    let received = wait_closed(&mut slow, Duration::from_secs(10))
        .expect("a connection with a stalled body still open after 10 s");
    let took = sent.elapsed();
    eprintln!("a stalled body answered and closed after {took:?}");
    let answer = parse_response(&received)
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&received)));
    let message = api_error(&answer, 408, "body_timeout");
    assert!(message.contains("1 s"), "{message}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // Nothing was created from half a body.
    assert_eq!(
        get(tcp.addr, "/v1/volumes", Some(&bearer())).json(),
        serde_json::json!([])
    );
}

#[test]
fn a_flood_beyond_the_connection_limit_waits_and_a_client_with_the_token_is_served() {
    let Some(tcp) = start(
        "127.0.0.1",
        "tcp_header_timeout_seconds = 1\ntcp_max_connections = 8",
        0o600,
    ) else {
        return;
    };
    let flood: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(tcp.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Beyond the limit: this connection waits in the backlog behind the flood, is accepted
    // as the flood's connections time out, and is served.
    let started = Instant::now();
    let answer = get(tcp.addr, "/v1/volumes", Some(&bearer()));
    let waited = started.elapsed();
    eprintln!("behind a flood of 40 with a limit of 8, served after {waited:?}");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json(), serde_json::json!([]));
    assert!(
        waited < Duration::from_secs(20),
        "served only after {waited:?}"
    );
    assert!(
        log_contains(&tcp.daemon, "TCP connection limit reached"),
        "no log line about the limit:\n{}",
        tcp.daemon.log()
    );
    assert!(
        log_contains(&tcp.daemon, "wait in the listen backlog"),
        "{}",
        tcp.daemon.log()
    );
    // Hit at every round of the flood, the limit is reported once: a flood cannot flood the
    // log.
    let reports = tcp
        .daemon
        .log()
        .matches("TCP connection limit reached")
        .count();
    assert_eq!(reports, 1, "{}", tcp.daemon.log());
    drop(flood);
    // Once the flood is gone, answers come at once again.
    let started = Instant::now();
    assert_eq!(get(tcp.addr, "/v1/health", Some(&bearer())).status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_alive(&tcp.daemon);
}

#[test]
fn listening_beyond_loopback_and_a_readable_token_file_are_warned_about() {
    let Some(exposed) = start("0.0.0.0", "", 0o644) else {
        return;
    };
    let token_file = exposed.token_file.display().to_string();
    for text in [
        "which is not a loopback address, without TLS",
        "the bearer token and all data travel in clear text",
        &format!("the token file {token_file} is readable by group or others (mode 644)"),
        &format!("chmod 600 {token_file}"),
    ] {
        assert!(
            log_contains(&exposed.daemon, text),
            "the log lacks {text:?}:\n{}",
            exposed.daemon.log()
        );
    }
    assert_eq!(get(exposed.addr, "/v1/health", Some(&bearer())).status, 200);
    drop(exposed);

    let Some(private) = start("127.0.0.1", "", 0o600) else {
        return;
    };
    assert!(log_contains(&private.daemon, "REST API on TCP"));
    let log = private.daemon.log();
    assert!(
        !log.contains("clear text") && !log.contains("readable by group or others"),
        "no warning expected on loopback with a private token file:\n{log}"
    );
}

#[test]
fn wrong_tokens_of_any_length_get_401() {
    let Some(tcp) = start("127.0.0.1", "", 0o600) else {
        return;
    };
    let mut changed_last = TOKEN.to_string();
    changed_last.pop();
    changed_last.push('X');
    let wrong: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer x".into()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {changed_last}")),
        Some(format!("Bearer {}", "a".repeat(4000))),
        Some(format!("bearer {TOKEN}")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.into()),
    ];
    for authorization in &wrong {
        let response = get(tcp.addr, "/v1/health", authorization.as_deref());
        api_error(&response, 401, "unauthorized");
    }
    assert_eq!(get(tcp.addr, "/v1/health", Some(&bearer())).status, 200);
    assert_alive(&tcp.daemon);
}
