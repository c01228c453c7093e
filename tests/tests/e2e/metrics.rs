//! `GET /metrics` of a real daemon driven by the real Docker Engine: a volume created with
//! `docker volume create`, written and used by containers, committed over REST while a
//! container runs (through a read point), and reset; the scrapes before and after must show
//! each of those, in text that parses strictly as the Prometheus text format 0.0.4 and that
//! `promtool check metrics` (Debian's `prometheus` package, from `scripts/metrics/packages.txt`)
//! accepts. Without promtool that check skips, and under `DVOL_REQUIRE_ALL=1` it fails.
//!
//! A push between two daemons on loopback TCP must count the same bytes sent on one side and
//! received on the other, and a scrape over TCP needs the bearer token like every route.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use dvol_tests::fixtures::*;
use dvol_tests::{is_root, parse_response, require, Daemon};
use serde_json::json;

/// How long a scrape may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes the test's container writes.
const WRITTEN: usize = 3 << 20;

/// A scrape: the samples by series (`name{labels}` exactly as written), and the text.
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    /// The sample `series`, which must be there.
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series} in:\n{}", self.text))
    }

    /// How much `series` grew since `before` (a series `before` lacks counts from 0).
    fn grew(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// `GET /metrics` on the daemon's REST socket: asserts 200 and the content type, parses the
/// text strictly.
fn scrape(daemon: &Daemon) -> Scrape {
    let stream = UnixStream::connect(&daemon.api_socket).expect("connect to the API socket");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    scrape_from(daemon, stream, "")
}

/// `GET /metrics` with the `extra` header lines on `stream`, as [`scrape`].
fn scrape_from(daemon: &Daemon, mut stream: impl Read + Write, extra: &str) -> Scrape {
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    let response = parse_response(&raw).expect("a whole HTTP answer");
    assert_eq!(response.status, 200, "{head}\n{}", daemon.log());
    assert!(
        head.lines()
            .any(|l| l == "content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let text = String::from_utf8(response.body).expect("UTF-8 text");
    Scrape {
        samples: parse_strictly(&text),
        text,
    }
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, no `:` in
/// label names).
fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(|c| !c.is_ascii_digit() && ok(c)) && chars.all(ok)
}

/// The label pairs of `{...}` (without braces), checking their syntax.
fn parse_labels(labels: &str, line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(valid_name(name, false), "label name {name:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        pairs.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else {
            assert!(rest.is_empty(), "junk after a label in {line:?}");
        }
    }
    pairs
}

/// Parses the Prometheus text format 0.0.4 strictly: every line is a `# HELP`, a `# TYPE`
/// (once per family, before its samples) or a sample of a declared family with valid
/// names, labels and value; histograms have cumulative buckets ending in `+Inf` equal to
/// `_count`. Returns the samples by series as written.
fn parse_strictly(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "the text must end with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    // Each histogram child's buckets in order, and its count.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, doc) = help.split_once(' ').expect("HELP name text");
            assert!(valid_name(name, true) && !doc.is_empty(), "{line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line:?}");
            continue;
        }
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("TYPE name type");
            assert!(valid_name(name, true), "{line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line:?}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(
                    labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("no closing brace in {line:?}")),
                    line,
                ),
            ),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name, true), "{line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {line:?}"));
        assert!(helped.contains(family), "sample without HELP: {line:?}");
        if kind == "counter" {
            assert!(name.ends_with("_total") && value >= 0.0, "{line:?}");
        }
        // A histogram child is its family and its labels other than `le`.
        let child = || {
            let rest: Vec<String> = labels
                .iter()
                .filter(|(n, _)| n != "le")
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect();
            format!("{family}{{{}}}", rest.join(","))
        };
        if kind == "histogram" && name.ends_with("_bucket") {
            let le = labels
                .iter()
                .find(|(n, _)| n == "le")
                .unwrap_or_else(|| panic!("bucket without le: {line:?}"));
            let bound = if le.1 == "+Inf" {
                f64::INFINITY
            } else {
                le.1.parse().expect("le is a number")
            };
            buckets.entry(child()).or_default().push((bound, value));
        }
        if kind == "histogram" && name.ends_with("_count") {
            counts.insert(child(), value);
        }
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series twice: {line:?}"
        );
    }
    for (child, list) in &buckets {
        assert!(
            list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{child}: buckets not cumulative: {list:?}"
        );
        assert_eq!(list.last().map(|b| b.0), Some(f64::INFINITY), "{child}");
        assert_eq!(
            counts.get(child).copied(),
            list.last().map(|b| b.1),
            "{child}: the +Inf bucket is not _count"
        );
    }
    assert_eq!(
        buckets.len(),
        counts.len(),
        "histograms with _count but no buckets"
    );
    samples
}

/// `promtool check metrics` on `text`, when promtool is there.
fn promtool_accepts(daemon: &Daemon, text: &str) {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(
        "promtool (Debian package prometheus; scripts/install-deps.sh installs it)",
        found,
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}\n{}",
        stdout(&out),
        stderr(&out),
        daemon.log()
    );
}

fn plugin_count(method: &str) -> String {
    format!(r#"dvol_plugin_request_duration_seconds_count{{method="{method}"}}"#)
}

/// The read points of each kind held so far.
fn read_points(scrape: &Scrape, point: &str) -> f64 {
    scrape.get(&format!(
        r#"dvol_read_point_hold_seconds_count{{point="{point}"}}"#
    ))
}

#[test]
fn metrics_count_what_docker_and_the_api_did() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let before = scrape(&daemon);
    promtool_accepts(&daemon, &before.text);
    let ready = r#"dvol_volumes{profile="silver",state="ready"}"#;
    assert_eq!(before.get(ready), 0.0, "{}", before.text);

    // Created by the engine on silver (an ext4 image, which a commit reads at a snapshot or
    // frozen), written by one container, committed while another runs, then reset.
    let volume = docker_volume_create(&daemon, &unique("metrics"), &["profile=silver", "size=64M"]);
    let name = volume.name.as_str();
    run_ok(
        &daemon,
        name,
        &format!("head -c {WRITTEN} /dev/urandom > /data/blob && sync"),
    );
    let user = Container::start(&daemon, name, "trap '' TERM; while :; do sleep 1; done");
    let committed = commit(&daemon, name, "from a running container");
    let read_from = committed["read_from"].as_str().expect("read_from");
    assert!(["snapshot", "frozen"].contains(&read_from), "{committed}");
    user.remove(&daemon);
    run_ok(&daemon, name, "rm /data/blob");
    let commit_id = committed["commit"]["id"].as_str().expect("commit id");
    api_expect(
        &daemon,
        "POST",
        &format!("/v1/volumes/{name}/reset"),
        &json!({ "ref": commit_id }),
        200,
    );

    let after = scrape(&daemon);
    promtool_accepts(&daemon, &after.text);
    let at_least = |series: &str, least: f64| {
        let grew = after.grew(&before, series);
        assert!(
            grew >= least,
            "{series} grew by {grew}, expected at least {least}:\n{}",
            after.text
        );
    };
    assert_eq!(after.get(ready), 1.0, "{}", after.text);
    assert_eq!(
        after.get(r#"dvol_volumes{profile="silver",state="creating"}"#),
        0.0
    );
    at_least(&plugin_count("VolumeDriver.Create"), 1.0);
    // Two `docker run --rm` and the detached container: three mounts and unmounts.
    at_least(&plugin_count("VolumeDriver.Mount"), 3.0);
    at_least(&plugin_count("VolumeDriver.Unmount"), 3.0);
    at_least(
        r#"dvol_api_request_duration_seconds_count{method="POST",route="/v1/volumes/{name}/commits",status="201"}"#,
        1.0,
    );
    at_least(
        r#"dvol_api_request_duration_seconds_count{method="POST",route="/v1/volumes/{name}/reset",status="200"}"#,
        1.0,
    );
    assert!(
        !after.text.contains(name),
        "a volume name leaks into the labels:\n{}",
        after.text
    );
    assert_eq!(
        after.grew(&before, "dvol_commit_duration_seconds_count"),
        1.0
    );
    at_least("dvol_commit_read_bytes_total", WRITTEN as f64);
    // Random data does not compress: what is stored is at least what was written.
    at_least("dvol_commit_stored_bytes_total", WRITTEN as f64);
    assert_eq!(
        read_points(&after, read_from) - read_points(&before, read_from),
        1.0,
        "{}",
        after.text
    );
    at_least(
        &format!(r#"dvol_read_point_hold_seconds_sum{{point="{read_from}"}}"#),
        f64::MIN_POSITIVE,
    );
    assert_eq!(
        after.grew(
            &before,
            r#"dvol_checkout_duration_seconds_count{operation="reset"}"#
        ),
        1.0
    );
    at_least(
        r#"dvol_checkout_written_bytes_total{operation="reset"}"#,
        WRITTEN as f64,
    );
    let capacity = |kind: &str| {
        after.get(&format!(
            r#"dvol_profile_capacity_bytes{{kind="{kind}",profile="silver"}}"#
        ))
    };
    assert!(
        capacity("total") > 0.0 && capacity("total") >= capacity("free"),
        "{}",
        after.text
    );

    // Removed through the engine: no longer counted; the scrape itself is, by the next one.
    must(&daemon, &["volume", "rm", name]);
    let again = scrape(&daemon);
    assert_eq!(again.get(ready), 0.0, "{}", again.text);
    assert_eq!(
        again.grew(&after, &plugin_count("VolumeDriver.Remove")),
        1.0
    );
    assert_eq!(
        again.grew(
            &after,
            r#"dvol_api_request_duration_seconds_count{method="GET",route="/metrics",status="200"}"#
        ),
        1.0
    );
}

/// The token the pushing test's receiver requires on TCP.
const TOKEN: &str = "metrics-transfer-token-0123456789abcdef";

/// A bronze-only daemon (`--config` in `dir`), with `extra` arguments.
fn bronze_daemon(dir: &std::path::Path, extra: &[String]) -> Daemon {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"bronze\"\n[profiles.bronze]\nbackend = \"directory\"\n",
    )
    .unwrap();
    let mut args = vec!["--config".to_string(), config.display().to_string()];
    args.extend_from_slice(extra);
    Daemon::start_with(args)
}

#[test]
fn a_push_counts_bytes_sent_and_received_and_tcp_scrapes_need_the_token() {
    if !require("root", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let receiver = bronze_daemon(
        dir.path(),
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--token-file".into(),
            token_file.display().to_string(),
        ],
    );
    let sender = bronze_daemon(dir.path(), &[]);

    // Over TCP a scrape needs the token, as every route.
    let tcp = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the TCP listener");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
    };
    let mut refused = tcp();
    refused
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    refused.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).expect("an answer").status, 401);
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let received_before = scrape_from(&receiver, tcp(), &bearer);
    let sent_before = scrape(&sender);

    let name = unique("metrics-push");
    api_expect(
        &sender,
        "POST",
        "/v1/volumes",
        &json!({ "name": name }),
        201,
    );
    let id = volume_id(&sender, &name);
    write_random_files(&data_dir(&sender, &id), 2, 16);
    commit(&sender, &name, "to push");
    api_expect(
        &sender,
        "POST",
        "/v1/remotes",
        &json!({ "name": "receiver", "url": format!("tcp://127.0.0.1:{port}"), "token": TOKEN }),
        201,
    );
    let pushed = api_expect(
        &sender,
        "POST",
        &format!("/v1/volumes/{name}/push"),
        &json!({ "remote": "receiver" }),
        200,
    );
    let bytes = pushed["bytes_sent"].as_f64().expect("bytes_sent");
    assert!(bytes > 0.0, "{pushed}");

    let sent_after = scrape(&sender);
    let received_after = scrape_from(&receiver, tcp(), &bearer);
    let sent = r#"dvol_transfer_bytes_total{direction="sent"}"#;
    let received = r#"dvol_transfer_bytes_total{direction="received"}"#;
    assert_eq!(
        sent_after.grew(&sent_before, sent),
        bytes,
        "{}",
        sent_after.text
    );
    assert_eq!(sent_after.grew(&sent_before, received), 0.0);
    assert_eq!(
        received_after.grew(&received_before, received),
        bytes,
        "{}",
        received_after.text
    );
    assert_eq!(
        received_after.grew(
            &received_before,
            r#"dvol_api_request_duration_seconds_count{method="POST",route="/v1/transfer/sessions/{session}/objects",status="200"}"#
        ),
        1.0,
        "{}",
        received_after.text
    );
    assert_eq!(
        received_after.get(r#"dvol_volumes{profile="bronze",state="ready"}"#),
        1.0
    );
}
