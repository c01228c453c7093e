//! The harness for several hosts on one machine: daemons in network namespaces of their own
//! reach each other over TCP and only there, and a host with a Docker Engine of its own serves
//! that engine's volumes without the system engine seeing them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use dvol_tests::certs::TestCa;
use dvol_tests::engine::EngineShare;
use dvol_tests::fixtures::*;
use dvol_tests::host_engine::HostEngine;
use dvol_tests::netns::Topology;
use dvol_tests::{docker, dvol_bin, require, Daemon, TEST_IMAGE};

/// The namespaces `ip netns list` shows.
fn namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Sends `GET /v1/node` with `token` to `addr` and returns what came back within 3 s (empty if
/// the connection failed).
fn ask_node(addr: SocketAddr, token: &str) -> String {
    let patience = Duration::from_secs(3);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, patience) else {
        return String::new();
    };
    stream.set_read_timeout(Some(patience)).unwrap();
    stream.set_write_timeout(Some(patience)).unwrap();
    let request = format!(
        "GET /v1/node HTTP/1.1\r\nHost: dvol\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut answer);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn daemons_in_two_hosts_reach_each_other_over_tcp_and_only_there() {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let made = topology.namespaces();
    let (a, b) = (topology.host("a"), topology.host("b"));
    assert_eq!(b.addr().to_string(), "10.77.0.2");
    topology.shape("a", "100mbit");
    let daemon_a = Daemon::start_in(a, None, true, Vec::new());
    let mut daemon_b = Daemon::start_in(b, None, true, Vec::new());
    let id_a = daemon_a.api("GET", "/v1/node", "").json()["id"].clone();
    let id_b = daemon_b.api("GET", "/v1/node", "").json()["id"].clone();
    assert!(id_b.is_string() && id_a != id_b, "{id_a} vs {id_b}");

    // From a's namespace, b answers on its own address.
    let out = a
        .command(dvol_bin())
        .arg("--host")
        .arg(format!("tcp://{}", daemon_b.listen_addr().unwrap()))
        .arg("--token-file")
        .arg(daemon_b.token_file())
        .args(["node", "--json"])
        .output()
        .expect("run dvol in host a");
    let node = assert_succeeded(&daemon_b, "dvol node --json from host a", &out);
    let node: serde_json::Value = serde_json::from_str(&node).expect("node JSON");
    assert_eq!(node["id"], id_b, "host a reached another daemon than b's");

    // From the root namespace, b's daemon is not reachable on b's address. (The machine's
    // own network may accept a connection to any address, so what counts is that b does not
    // answer.)
    let addr = SocketAddr::from((b.addr(), dvol_tests::HOST_PORT));
    let token = std::fs::read_to_string(daemon_b.token_file()).unwrap();
    let answer = ask_node(addr, token.trim());
    assert!(
        !answer.contains(id_b.as_str().unwrap()),
        "b's daemon answered the root namespace on {addr}: {answer}"
    );

    // nsenter execs the daemon: the child is the daemon itself, and kill -9 kills it.
    let pid = daemon_b.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "dvol",
        "the child of nsenter is not the daemon"
    );
    daemon_b.kill9();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} still alive"
    );

    drop(daemon_a);
    drop(daemon_b);
    drop(topology);
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| made.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after drop: {left:?}");
}

#[test]
fn a_host_with_its_own_engine_serves_that_engines_volumes() {
    let Some(topology) = Topology::for_test(&["b"]) else {
        return;
    };
    let Some(engine) = HostEngine::for_test() else {
        return;
    };
    eprintln!(
        "the host's Docker Engine started (with the test image) in {:?}",
        engine.started_in()
    );
    let daemon = Daemon::start_in(topology.host("b"), Some(&engine), false, Vec::new());
    let volume = &unique("hosts-v1");
    engine.docker_ok(&["volume", "create", "-d", &daemon.driver, volume]);
    let mount = format!("{volume}:/d");
    let container = engine.docker_ok(&[
        "run",
        "-d",
        "-v",
        &mount,
        TEST_IMAGE,
        "sh",
        "-c",
        "echo hi > /d/f && sleep 300",
    ]);

    // The file is in the daemon's mount of the volume, seen from the root mount namespace
    // (a container writing into the bare mountpoint directory would not show there).
    let mountpoint = daemon.mountpoint(volume);
    assert!(
        is_kernel_mounted(&daemon, &mountpoint),
        "{} is not mounted while a container uses it",
        mountpoint.display()
    );
    let file = mountpoint.join("f");
    wait_until(
        &daemon,
        "the container wrote /d/f into the volume",
        30,
        || std::fs::read_to_string(&file).is_ok_and(|text| text == "hi\n"),
    );
    let listed = daemon.api("GET", "/v1/volumes", "").json();
    assert!(
        listed.to_string().contains(&format!("\"{volume}\"")),
        "the daemon does not list {volume}: {listed}"
    );
    engine.docker_ok(&["rm", "-f", &container]);
    engine.docker_ok(&["volume", "rm", volume]);

    // The system engine never saw the host's daemon.
    let socket = Path::new("/run/docker/plugins").join(format!("{}.sock", daemon.driver));
    assert!(!socket.exists(), "{} exists", socket.display());
    let _share = EngineShare::take();
    if docker(&["version"]).status.success() {
        let out = docker(&["volume", "ls", "-q"]);
        assert!(
            !stdout(&out).split_whitespace().any(|v| v == volume),
            "the system engine lists {volume}"
        );
        let out = docker(&["info", "--format", "{{json .Plugins.Volume}}"]);
        assert!(
            !stdout(&out).contains(&daemon.driver),
            "the system engine knows {}",
            daemon.driver
        );
    } else {
        eprintln!("the system engine does not answer: its volumes are not checked");
    }
}

/// `openssl verify -CAfile ca cert`: whether `cert` verifies against `ca`, and the output.
fn openssl_verify(ca: &Path, cert: &Path) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn test_certificates_name_the_ip_and_verify_only_against_their_ca() {
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require("openssl", openssl) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (TestCa::new("dvol test CA"), TestCa::new("another CA"));
    let server = ca.issue_for_ip(std::net::Ipv4Addr::new(10, 77, 0, 2), dir.path());
    let (ok, text) = openssl_verify(ca.pem_path(), &server.cert);
    assert!(ok, "the certificate does not verify against its CA: {text}");
    let (ok, text) = openssl_verify(other.pem_path(), &server.cert);
    assert!(
        !ok,
        "the certificate verifies against an unrelated CA: {text}"
    );
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&server.cert)
        .output()
        .expect("run openssl x509");
    assert_contains_all(&stdout(&out), &["IP Address:10.77.0.2"]);
    let key = std::fs::read_to_string(&server.key).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
}
