//! Robustness of a real `dvol daemon`: hostile and malformed input on both sockets, the
//! engine's bare requests, the plugin protocol's mount semantics, crashes and restarts,
//! concurrent calls, and refused configurations.
//!
//! Every test runs its own daemon (root and sockets of its own) and needs root for mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dvol_tests::fixtures::*;
use dvol_tests::{daemon_must_fail, is_root, parse_response, require, Daemon, HttpResponse};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers: raw HTTP, protocol calls, assertions.
// ---------------------------------------------------------------------------------------------

/// The largest body the daemon accepts (1 MiB); one byte more must get 413.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Sends one request over `stream` and reads the answer, which must come with a
/// `Content-Length` (what axum sends for JSON bodies). Write and read errors are tolerated: a
/// server refusing an oversized body may answer and close before reading it all.
fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "unreadable HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    });
    assert!(
        !response.chunked,
        "unexpected chunked answer to {method} {path}"
    );
    response
}

fn unix_request(socket: &Path, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    let stream =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    exchange(stream, method, path, &[], body)
}

fn tcp_request(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpResponse {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    exchange(stream, "GET", path, &headers, b"")
}

/// Percent-encodes every byte but letters and digits, for a name in a URL path.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every volume the REST API lists.
fn api_volumes(daemon: &Daemon) -> Vec<Value> {
    let response = daemon.api("GET", "/v1/volumes", "");
    assert_eq!(response.status, 200, "{:?}", response.json());
    response.json().as_array().expect("volume list").clone()
}

/// The names the plugin protocol lists.
fn plugin_names(daemon: &Daemon) -> BTreeSet<String> {
    plugin_ok(daemon, "VolumeDriver.List", "{}")["Volumes"]
        .as_array()
        .expect("Volumes")
        .iter()
        .map(|v| v["Name"].as_str().expect("Name").to_string())
        .collect()
}

fn dir_names(path: &Path) -> BTreeSet<String> {
    std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Everything under the daemon root's parent except the root itself: path, kind and size
/// (the log's size is left out, it grows).
fn outside_root(daemon: &Daemon) -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, skip: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(format!("{rel}/"));
                walk(&path, base, skip, out);
            } else if rel.ends_with(".log") {
                out.insert(rel);
            } else {
                out.insert(format!("{rel} ({} bytes)", meta.len()));
            }
        }
    }
    let base = daemon.root.parent().unwrap();
    let mut out = BTreeSet::new();
    walk(base, base, &daemon.root, &mut out);
    out
}

/// Plants decoy folders beside the root, where `../x`-style names would land if they ever
/// reached a path, and returns the state outside the root to compare against later.
/// What lies outside the daemon root, to compare before and after hostile calls.
#[derive(Debug, PartialEq)]
struct Outside {
    /// [`outside_root`] of the root's parent.
    tree: BTreeSet<String>,
    /// Where each hostile name would land if it were joined to a folder of the root, for
    /// the spots outside the root, and whether something exists there.
    landing_spots: BTreeMap<PathBuf, bool>,
}

/// Resolves `.` and `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn outside(daemon: &Daemon) -> Outside {
    let bases = [
        daemon.root.clone(),
        daemon.root.join("mounts"),
        daemon.root.join("backends/directory"),
    ];
    let landing_spots = hostile_names()
        .iter()
        .filter(|name| !name.contains('\0'))
        .flat_map(|name| bases.iter().map(move |base| normalize(&base.join(name))))
        .filter(|spot| !spot.starts_with(&daemon.root))
        .map(|spot| {
            let exists = spot.symlink_metadata().is_ok();
            (spot, exists)
        })
        .collect();
    Outside {
        tree: outside_root(daemon),
        landing_spots,
    }
}

/// Plants decoy folders beside the root, where `../x`-style names would land if they ever
/// reached a path, and returns the state outside the root to compare against later.
fn plant_sentinels(daemon: &Daemon) -> Outside {
    let base = daemon.root.parent().unwrap();
    for dir in ["x", "etc"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
        std::fs::write(base.join(dir).join("keep"), b"sentinel").unwrap();
    }
    let before = outside(daemon);
    assert!(
        before.landing_spots.len() >= 4,
        "too few spots outside the root: {before:?}"
    );
    before
}

fn assert_outside_untouched(daemon: &Daemon, before: &Outside) {
    assert_eq!(
        &outside(daemon),
        before,
        "files outside the daemon root changed"
    );
    let base = daemon.root.parent().unwrap();
    for dir in ["x", "etc"] {
        assert_eq!(
            std::fs::read(base.join(dir).join("keep")).unwrap(),
            b"sentinel"
        );
    }
}

/// Names that break the grammar, including path tricks and control characters.
fn hostile_names() -> Vec<String> {
    [
        "a/b",
        "/abs",
        "..",
        ".",
        "../x",
        "../../x",
        "../etc",
        "../../etc/passwd",
        "../../../x",
        "../../../../tmp/dvol-escape",
        "a\u{0}b",
        "a\nb",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once("n".repeat(300)))
    .collect()
}

/// Asserts that a refusal of a hostile name says what is allowed without echoing it raw.
fn assert_name_refusal(message: &str, name: &str) {
    assert_contains_all(message, &["invalid volume name", "at most 64 characters"]);
    assert!(
        !message.contains('\0') && !message.contains('\n'),
        "control characters must be escaped: {message:?}"
    );
    if name.len() > 64 {
        assert!(
            message.len() < name.len(),
            "the whole name is echoed: {message}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_plugin_input_gets_a_clear_err_and_the_daemon_stays_up() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let before = plant_sentinels(&daemon);
    let create = "VolumeDriver.Create";

    for (body, expect) in [
        (r#"{"Name":"#, "malformed VolumeDriver.Create request"),
        (r#"{"Name": 5}"#, "invalid type"),
        (r#"{"Name": "a", "Opts": [1]}"#, "invalid type"),
        ("", "missing field `Name`"),
    ] {
        let err = plugin_fails(&daemon, create, body, 400);
        assert_contains_all(&err, &[expect]);
        assert_alive(&daemon);
    }
    let err = plugin_fails(&daemon, "VolumeDriver.Mount", r#"{"Name": ["x"]}"#, 400);
    assert_contains_all(&err, &["malformed VolumeDriver.Mount request"]);

    let err = plugin_fails(&daemon, "VolumeDriver.Frobnicate", "{}", 404);
    assert_contains_all(
        &err,
        &["VolumeDriver.Frobnicate", "VolumeDriver.", "Create"],
    );
    assert_alive(&daemon);

    for name in hostile_names() {
        for (method, body) in [
            (create, create_body(&name, Value::Null)),
            ("VolumeDriver.Mount", mount_body(&name, "m")),
            ("VolumeDriver.Unmount", mount_body(&name, "m")),
            ("VolumeDriver.Get", name_body(&name)),
            ("VolumeDriver.Path", name_body(&name)),
            ("VolumeDriver.Remove", name_body(&name)),
        ] {
            let err = plugin_fails(&daemon, method, &body, 200);
            assert_name_refusal(&err, &name);
        }
        assert_alive(&daemon);
    }

    let unknown_profile = [
        create_body("x@platinum", Value::Null),
        create_body("x", json!({ "profile": "platinum" })),
    ];
    for body in unknown_profile {
        let err = plugin_fails(&daemon, create, &body, 200);
        assert_contains_all(&err, &["platinum", "bronze, gold, silver"]);
        assert_alive(&daemon);
    }
    let bad_options = [
        (
            json!({ "size": "-1" }),
            &["size", "-1", "positive number", "10G"][..],
        ),
        (
            json!({ "size": "1E" }),
            &["size", "1E", "largest", "1PiB"][..],
        ),
        (
            json!({ "colour": "red" }),
            &["colour", "size, profile, fs, from"][..],
        ),
    ];
    for (opts, expect) in bad_options {
        let err = plugin_fails(&daemon, create, &create_body("x", opts), 200);
        assert_contains_all(&err, expect);
        assert_alive(&daemon);
    }

    assert!(
        plugin_names(&daemon).is_empty(),
        "bad input created volumes"
    );
    assert!(dir_names(&daemon.root.join("backends/directory")).is_empty());
    assert!(dir_names(&daemon.root.join("mounts")).is_empty());
    assert_outside_untouched(&daemon, &before);
}

#[test]
fn bad_api_input_gets_a_json_error_and_the_daemon_stays_up() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let before = plant_sentinels(&daemon);
    let post = |body: &str| daemon.api("POST", "/v1/volumes", body);

    for body in [
        r#"{"name":"#,
        r#"{"name": 5}"#,
        r#"{"name": "a", "colour": "red"}"#,
        r#"{"name": "a", "options": {"size": 10}}"#,
        "",
    ] {
        let message = api_error(&post(body), 400, "bad_body");
        assert_contains_all(&message, &["malformed volume request"]);
        assert_alive(&daemon);
    }
    for path in ["/v1/frobnicate", "/v2/volumes", "/", "/v1/volumes/a/b"] {
        let message = api_error(&daemon.api("GET", path, ""), 404, "no_route");
        assert_contains_all(&message, &["/v1/openapi.json"]);
    }
    api_error(
        &daemon.api("PUT", "/v1/health", ""),
        405,
        "method_not_allowed",
    );
    assert_contains_all(
        &api_error(
            &daemon.api("GET", "/v1/volumes/nothing", ""),
            404,
            "not_found",
        ),
        &["nothing"],
    );
    assert_alive(&daemon);

    for name in hostile_names() {
        let message = api_error(
            &post(&json!({ "name": name }).to_string()),
            400,
            "invalid_name",
        );
        assert_name_refusal(&message, &name);
        if !name.is_empty() {
            let path = format!("/v1/volumes/{}", encode(&name));
            for method in ["GET", "DELETE"] {
                let message = api_error(&daemon.api(method, &path, ""), 400, "invalid_name");
                assert_name_refusal(&message, &name);
            }
        }
        assert_alive(&daemon);
    }

    for body in [
        json!({ "name": "x@platinum" }),
        json!({ "name": "x", "options": { "profile": "platinum" } }),
    ] {
        let message = api_error(&post(&body.to_string()), 400, "unknown_profile");
        assert_contains_all(&message, &["platinum", "bronze, gold, silver"]);
    }
    for (size, expect) in [("-1", "positive number"), ("1E", "1PiB")] {
        let body = json!({ "name": "x", "options": { "size": size } });
        let message = api_error(&post(&body.to_string()), 400, "invalid_option");
        assert_contains_all(&message, &["size", size, expect]);
    }
    let body = json!({ "name": "x", "options": { "colour": "red" } });
    let message = api_error(&post(&body.to_string()), 400, "unknown_option");
    assert_contains_all(&message, &["colour", "size, profile, fs, from"]);
    assert_alive(&daemon);
    assert!(api_volumes(&daemon).is_empty(), "bad input created volumes");

    // Conflicts: 409.
    let created = post(&json!({ "name": "busy" }).to_string());
    assert_eq!(created.status, 201, "{:?}", created.json());
    let message = api_error(
        &post(&json!({ "name": "busy@gold" }).to_string()),
        409,
        "profile_mismatch",
    );
    assert_contains_all(&message, &["busy", "bronze", "gold"]);
    plugin_ok(&daemon, "VolumeDriver.Mount", &mount_body("busy", "m"));
    let message = api_error(&daemon.api("DELETE", "/v1/volumes/busy", ""), 409, "in_use");
    assert_contains_all(&message, &["busy", "in use"]);
    plugin_ok(&daemon, "VolumeDriver.Unmount", &mount_body("busy", "m"));
    assert_eq!(daemon.api("DELETE", "/v1/volumes/busy", "").status, 204);

    assert!(api_volumes(&daemon).is_empty());
    assert_outside_untouched(&daemon, &before);
}

#[test]
fn bodies_over_one_mib_get_413_on_both_sockets() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    // A create request of exactly `len` bytes whose one option pads it out.
    let padded = |template: &str, len: usize| {
        let padding = "x".repeat(len - template.len() + "{pad}".len());
        template.replace("{pad}", &padding)
    };
    let plugin_template = r#"{"Name": "big", "Opts": {"pad": "{pad}"}}"#;
    let api_template = r#"{"name": "big", "options": {"pad": "{pad}"}}"#;

    let at_limit = padded(plugin_template, MAX_BODY_BYTES);
    let err = plugin_fails(&daemon, "VolumeDriver.Create", &at_limit, 200);
    assert_contains_all(&err, &["unknown option", "pad"]);
    let response = unix_request(
        &daemon.plugin_socket,
        "POST",
        "/VolumeDriver.Create",
        padded(plugin_template, MAX_BODY_BYTES + 1).as_bytes(),
    );
    assert_eq!(response.status, 413, "{:?}", response.json());
    assert!(plugin_err(&response).is_some(), "{:?}", response.json());
    assert_alive(&daemon);

    let at_limit = padded(api_template, MAX_BODY_BYTES);
    api_error(
        &daemon.api("POST", "/v1/volumes", &at_limit),
        400,
        "unknown_option",
    );
    let response = unix_request(
        &daemon.api_socket,
        "POST",
        "/v1/volumes",
        padded(api_template, MAX_BODY_BYTES + 1).as_bytes(),
    );
    api_error(&response, 413, "body_too_large");
    assert_alive(&daemon);
    assert!(plugin_names(&daemon).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. The engine's bare requests
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_requests_without_body_or_content_type_work() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let activate = daemon.plugin("Plugin.Activate", "");
    assert_eq!(activate.status, 200);
    assert_eq!(activate.json(), json!({ "Implements": ["VolumeDriver"] }));

    for body in ["", "{}"] {
        let capabilities = plugin_ok(&daemon, "VolumeDriver.Capabilities", body);
        assert_eq!(
            capabilities["Capabilities"]["Scope"], "local",
            "{capabilities}"
        );
        let list = plugin_ok(&daemon, "VolumeDriver.List", body);
        assert_eq!(list["Volumes"], json!([]), "{list}");
    }

    plugin_ok(
        &daemon,
        "VolumeDriver.Create",
        r#"{"Name": "bare", "Opts": null}"#,
    );
    plugin_ok(&daemon, "VolumeDriver.Create", r#"{"Name": "noopts"}"#);
    for body in ["", "{}"] {
        let list = plugin_ok(&daemon, "VolumeDriver.List", body);
        let names: Vec<_> = list["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["bare", "noopts"], "{list}");
    }
    let got = plugin_ok(&daemon, "VolumeDriver.Get", &name_body("bare"));
    assert_eq!(got["Volume"]["Name"], "bare");
    assert_eq!(api_volume(&daemon, "bare")["profile"], "bronze");
}

// ---------------------------------------------------------------------------------------------
// 3. Protocol semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn mounts_are_counted_per_id_and_remove_waits_for_the_last_unmount() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let err = plugin_fails(&daemon, "VolumeDriver.Get", &name_body("sem"), 200);
    assert_contains_all(&err, &["sem"]);
    plugin_fails(&daemon, "VolumeDriver.Path", &name_body("sem"), 200);
    plugin_fails(&daemon, "VolumeDriver.Mount", &mount_body("sem", "m1"), 200);

    plugin_ok(
        &daemon,
        "VolumeDriver.Create",
        &create_body("sem", Value::Null),
    );
    let id = volume_id(&daemon, "sem");
    let path = plugin_ok(&daemon, "VolumeDriver.Path", &name_body("sem"))["Mountpoint"]
        .as_str()
        .expect("Path answers a Mountpoint before Mount")
        .to_string();
    let mountpoint = PathBuf::from(&path);
    assert_eq!(mountpoint, daemon.root.join("mounts").join(&id));
    assert!(!is_kernel_mounted(&daemon, &mountpoint));

    let mount = |mount_id: &str| {
        plugin_ok(&daemon, "VolumeDriver.Mount", &mount_body("sem", mount_id))["Mountpoint"]
            .as_str()
            .expect("Mountpoint")
            .to_string()
    };
    let unmount = |mount_id: &str| {
        plugin_ok(
            &daemon,
            "VolumeDriver.Unmount",
            &mount_body("sem", mount_id),
        );
    };
    assert_eq!(
        mount("m1"),
        path,
        "Mount must answer the mountpoint Path gave"
    );
    assert!(is_kernel_mounted(&daemon, &mountpoint));
    std::fs::write(mountpoint.join("data"), b"kept").unwrap();
    assert_eq!(mount("m1"), path);
    assert_eq!(api_volume(&daemon, "sem")["mounts"], json!({ "m1": 2 }));

    unmount("m1");
    assert!(
        is_kernel_mounted(&daemon, &mountpoint),
        "one of two mounts with the same ID was released; the volume must stay mounted"
    );
    assert_eq!(api_volume(&daemon, "sem")["mounts"], json!({ "m1": 1 }));

    let err = plugin_fails(&daemon, "VolumeDriver.Remove", &name_body("sem"), 200);
    assert_contains_all(&err, &["in use"]);
    assert!(is_kernel_mounted(&daemon, &mountpoint));
    assert_eq!(std::fs::read(mountpoint.join("data")).unwrap(), b"kept");

    unmount("m1");
    assert!(!is_kernel_mounted(&daemon, &mountpoint));
    let view = api_volume(&daemon, "sem");
    assert_eq!(view["mounts"], json!({}));
    assert_eq!(view["mounted"], false);
    // A repeated unmount (the engine repeats them after a restart) is tolerated.
    unmount("m1");
    assert_eq!(
        std::fs::read(data_dir(&daemon, &id).join("data")).unwrap(),
        b"kept"
    );

    plugin_ok(&daemon, "VolumeDriver.Remove", &name_body("sem"));
    assert!(!data_dir(&daemon, &id).exists(), "Remove left the data");
    assert!(!mountpoint.exists(), "Remove left the mountpoint");
    plugin_fails(&daemon, "VolumeDriver.Get", &name_body("sem"), 200);
    assert!(plugin_names(&daemon).is_empty());
    assert!(daemon.kernel_mounts().is_empty());
}

#[test]
fn get_answers_the_name_as_asked_with_an_rfc3339_created_at() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    // bronze is the one built-in profile served by the directory backend on every host.
    plugin_ok(
        &daemon,
        "VolumeDriver.Create",
        &create_body("orders@bronze", Value::Null),
    );

    for asked in ["orders@bronze", "orders"] {
        let volume = plugin_ok(&daemon, "VolumeDriver.Get", &name_body(asked))["Volume"].clone();
        assert_eq!(volume["Name"], asked, "{volume}");
        let created = volume["CreatedAt"].as_str().expect("CreatedAt");
        assert!(is_rfc3339(created), "CreatedAt {created:?} is not RFC 3339");
        assert_eq!(volume["Status"]["profile"], "bronze", "{volume}");
        assert!(volume["Mountpoint"]
            .as_str()
            .is_some_and(|m| m.starts_with(daemon.root.to_str().unwrap())));
    }
    let err = plugin_fails(
        &daemon,
        "VolumeDriver.Get",
        &name_body("orders@silver"),
        200,
    );
    assert_contains_all(&err, &["orders", "bronze", "silver"]);

    assert_eq!(
        plugin_names(&daemon),
        BTreeSet::from(["orders".to_string()])
    );
    let list = plugin_ok(&daemon, "VolumeDriver.List", "{}");
    let created = list["Volumes"][0]["CreatedAt"].as_str().unwrap_or_default();
    assert!(is_rfc3339(created), "List CreatedAt {created:?}");
    assert!(is_rfc3339(
        api_volume(&daemon, "orders")["created_at"]
            .as_str()
            .unwrap()
    ));
}

#[test]
fn rfc3339_checker_accepts_only_rfc3339() {
    for good in [
        "2024-05-01T12:34:56Z",
        "2024-05-01T12:34:56.123456Z",
        "2024-05-01T12:34:56+02:00",
    ] {
        assert!(is_rfc3339(good), "{good}");
    }
    for bad in [
        "",
        "2024-05-01",
        "2024-05-01 12:34:56",
        "2024-13-01T12:34:56Z",
        "2024-05-01T12:34:56",
        "2024-05-01T12:34:56.Z",
        "1714566896",
        "2024-05-01T12:34:56+0200",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Crash and restart
// ---------------------------------------------------------------------------------------------

#[test]
fn a_mounted_volume_survives_kill9_and_can_be_released_after() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    let mountpoint =
        plugin_create_and_mount(&daemon, &create_body("crash", Value::Null), "crash", "c1");
    std::fs::write(mountpoint.join("file"), b"before the crash").unwrap();
    let id = volume_id(&daemon, "crash");

    daemon.kill9();
    assert!(
        is_kernel_mounted(&daemon, &mountpoint),
        "containers keep their mounts when the daemon dies"
    );
    daemon.spawn();

    assert_eq!(plugin_names(&daemon), BTreeSet::from(["crash".to_string()]));
    let view = api_volume(&daemon, "crash");
    assert_eq!(view["mounted"], true, "{view}");
    assert_eq!(view["mounts"], json!({ "c1": 1 }), "{view}");
    assert!(is_kernel_mounted(&daemon, &mountpoint));
    assert_eq!(
        std::fs::read(mountpoint.join("file")).unwrap(),
        b"before the crash"
    );
    let got = plugin_ok(&daemon, "VolumeDriver.Get", &name_body("crash"));
    assert_eq!(got["Volume"]["Mountpoint"], mountpoint.to_str().unwrap());

    plugin_unmount_and_remove(&daemon, "crash", "c1", &mountpoint);
    assert!(!data_dir(&daemon, &id).exists());
    assert!(plugin_names(&daemon).is_empty());
}

#[test]
fn a_mount_lost_while_the_daemon_was_down_is_forgotten_at_restart() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    let mountpoint =
        plugin_create_and_mount(&daemon, &create_body("reboot", Value::Null), "reboot", "r1");
    daemon.kill9();
    let status = Command::new("umount").arg(&mountpoint).status().unwrap();
    assert!(status.success(), "umount {}", mountpoint.display());
    assert!(!is_kernel_mounted(&daemon, &mountpoint));
    daemon.spawn();

    assert_lost_mount_forgotten(&daemon, "reboot", "r1", &mountpoint);
    plugin_unmount_and_remove(&daemon, "reboot", "r1", &mountpoint);
    assert!(plugin_names(&daemon).is_empty());
}

#[test]
fn sigterm_exits_cleanly_and_a_stale_socket_does_not_block_the_next_start() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    plugin_ok(
        &daemon,
        "VolumeDriver.Create",
        &create_body("kept", Value::Null),
    );
    let status = daemon.stop();
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        daemon.log()
    );
    for socket in [&daemon.plugin_socket, &daemon.api_socket] {
        assert!(!socket.exists(), "{} left behind", socket.display());
    }

    for socket in [&daemon.plugin_socket, &daemon.api_socket] {
        drop(UnixListener::bind(socket).unwrap());
        assert!(
            socket.exists(),
            "stale socket file {} not made",
            socket.display()
        );
    }
    daemon.spawn();
    assert_alive(&daemon);
    assert_eq!(plugin_names(&daemon), BTreeSet::from(["kept".to_string()]));
}

// ---------------------------------------------------------------------------------------------
// 5. Concurrency
// ---------------------------------------------------------------------------------------------

/// xorshift64: a tiny deterministic generator, one per thread.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A volume's identity and mount state as the REST API lists it.
fn listing(daemon: &Daemon) -> BTreeMap<String, (String, Value)> {
    api_volumes(daemon)
        .into_iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_string();
            let id = v["id"].as_str().unwrap().to_string();
            (name, (id, v["mounts"].clone()))
        })
        .collect()
}

/// One random plugin call. `Ok(Some(method))`: it succeeded; `Ok(None)`: an expected refusal
/// (racing a remove, or removing what another thread has mounted); `Err`: anything else.
fn random_call(daemon: &Daemon, rng: &mut XorShift) -> Result<Option<&'static str>, String> {
    let name = format!("c{}", rng.below(10));
    let mount_id = format!("m{}", rng.below(3));
    let (method, body) = match rng.below(4) {
        0 => ("VolumeDriver.Create", create_body(&name, Value::Null)),
        1 => ("VolumeDriver.Mount", mount_body(&name, &mount_id)),
        2 => ("VolumeDriver.Unmount", mount_body(&name, &mount_id)),
        _ => ("VolumeDriver.Remove", name_body(&name)),
    };
    let response = daemon.plugin(method, &body);
    match plugin_err(&response) {
        _ if response.status != 200 => Err(format!("{method} {body}: HTTP {}", response.status)),
        None => Ok(Some(method)),
        Some(e) if e.contains("no volume named") || e.contains("in use") => Ok(None),
        Some(e) => Err(format!("{method} {body}: {e}")),
    }
}

#[test]
fn concurrent_plugin_calls_leave_consistent_state() {
    if !require("root", is_root()) {
        return;
    }
    const THREADS: u64 = 50;
    const CALLS_PER_THREAD: usize = 6;
    let mut daemon = Daemon::start();

    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|seed| {
                let daemon = &daemon;
                scope.spawn(move || {
                    let mut rng = XorShift::new(seed + 1);
                    (0..CALLS_PER_THREAD)
                        .map(|_| random_call(daemon, &mut rng))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let unexpected: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        unexpected.is_empty(),
        "unexpected answers under concurrency:\n{unexpected:#?}\nlog:\n{}",
        daemon.log()
    );
    let succeeded: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|o| *o.as_ref().unwrap())
        .collect();
    assert_eq!(
        succeeded.len(),
        4,
        "some methods never succeeded: {succeeded:?}"
    );
    assert_alive(&daemon);

    // Right after the storm, the API's mount state must match the kernel's.
    let mounted_per_api: BTreeSet<PathBuf> = listing(&daemon)
        .values()
        .filter(|(_, mounts)| mounts != &json!({}))
        .map(|(id, _)| daemon.root.join("mounts").join(id))
        .collect();
    let mounted_per_kernel: BTreeSet<PathBuf> = daemon.kernel_mounts().into_iter().collect();
    assert_eq!(
        mounted_per_api, mounted_per_kernel,
        "API mounts vs kernel mounts"
    );
    assert_alive(&daemon);

    for (name, (_, mounts)) in listing(&daemon) {
        for (mount_id, count) in mounts.as_object().unwrap() {
            for _ in 0..count.as_u64().unwrap() {
                plugin_ok(
                    &daemon,
                    "VolumeDriver.Unmount",
                    &mount_body(&name, mount_id),
                );
            }
        }
    }

    let assert_consistent = |daemon: &Daemon| {
        let listed = listing(daemon);
        for (name, (_, mounts)) in &listed {
            assert_eq!(mounts, &json!({}), "{name} still has mount ids");
        }
        let ids: BTreeSet<String> = listed.values().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            ids,
            dir_names(&daemon.root.join("backends/directory")),
            "listed volumes vs data directories"
        );
        assert_eq!(
            ids,
            dir_names(&daemon.root.join("mounts")),
            "listed volumes vs mountpoints"
        );
        let names: BTreeSet<String> = listed.keys().cloned().collect();
        assert_eq!(plugin_names(daemon), names, "plugin List vs REST list");
        assert!(
            daemon.kernel_mounts().is_empty(),
            "still mounted: {:?}",
            daemon.kernel_mounts()
        );
        listed
    };
    let before = assert_consistent(&daemon);

    assert!(daemon.stop().success());
    daemon.spawn();
    assert_eq!(
        assert_consistent(&daemon),
        before,
        "listing changed across a restart"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Configuration and the TCP API
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_configuration_is_refused_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown-key.toml",
            "default_profile = \"a\"\n[profiles.a]\nbackend = \"directory\"\ncolour = \"red\"\n",
            &[":4:", "colour", "unknown field"][..],
        ),
        (
            "bad-size.toml",
            "[profiles.a]\nbackend = \"loop\"\nsize = \"-1\"\n",
            &[":3: size: invalid size \"-1\""][..],
        ),
    ];
    for (file, text, expect) in cases {
        let config = dir.path().join(file);
        std::fs::write(&config, text).unwrap();
        let stderr = daemon_must_fail(dir.path(), &["--config", config.to_str().unwrap()]);
        let location = format!("{}{}", config.display(), expect[0]);
        assert_contains_all(&stderr, &[&location]);
        assert_contains_all(&stderr, expect);
    }
}

#[test]
fn tcp_listen_without_a_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = daemon_must_fail(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_contains_all(&stderr, &["--token-file", "token"]);

    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let stderr = daemon_must_fail(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            empty.to_str().unwrap(),
        ],
    );
    assert_contains_all(&stderr, &["token", "empty"]);
}

#[test]
fn tcp_api_requires_the_bearer_token() {
    if !require("root", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-for-the-test";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let daemon = Daemon::start_with(vec![
        "--listen".into(),
        addr.to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ]);

    for presented in [None, Some("wrong"), Some("s3cret-token-for-the-tes")] {
        let response = tcp_request(addr, "/v1/health", presented);
        api_error(&response, 401, "unauthorized");
    }
    let health = tcp_request(addr, "/v1/health", Some(token));
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let volumes = tcp_request(addr, "/v1/volumes", Some(token));
    assert_eq!(volumes.status, 200);
    assert_eq!(volumes.json(), json!([]));
    assert_alive(&daemon);
}
