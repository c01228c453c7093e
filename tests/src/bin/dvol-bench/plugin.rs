//! Section `plugin`: plugin calls over the unix socket with N volumes: p50/p99 latency of Get,
//! Path, Mount+Unmount and List (Create and Remove, timed by the caller, are reported for
//! information).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use dvol_tests::{Daemon, HttpResponse};
use serde_json::{json, Value};

use crate::{checked, stats, timed_call, Args, Report};

const AIM_GET_P99_US: f64 = 1_000.0;
const AIM_PATH_P99_US: f64 = 1_000.0;
const AIM_LIST_P99_US: f64 = 20_000.0;

/// A kept-alive HTTP/1.1 connection to the plugin socket, as the engine's Go client keeps one.
pub(crate) struct KeepAlive {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl KeepAlive {
    pub(crate) fn connect(socket: &Path) -> Result<KeepAlive> {
        let writer = UnixStream::connect(socket)
            .with_context(|| format!("connect to {}", socket.display()))?;
        writer.set_read_timeout(Some(Duration::from_secs(150)))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(KeepAlive { writer, reader })
    }

    pub(crate) fn call(&mut self, path: &str, body: &[u8]) -> Result<(Duration, Value)> {
        let start = Instant::now();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("keep-alive {path}: bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            ensure!(
                self.reader.read_line(&mut line)? > 0,
                "keep-alive {path}: connection closed in the headers"
            );
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length =
            length.ok_or_else(|| anyhow!("keep-alive {path}: answer without Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        let took = start.elapsed();
        let response = HttpResponse {
            status,
            body,
            chunked: false,
        };
        Ok((took, checked(path, &response)?))
    }
}

/// Section `plugin`: Get, Path (new connection and keep-alive), Mount+Unmount and List on the
/// volumes `names` (already created).
pub fn run(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    names: &[String],
    bodies: &[Vec<u8>],
) -> Result<()> {
    let socket = &daemon.plugin_socket;
    // Warm up the read paths (not measured).
    for i in 0..100.min(args.samples) {
        timed_call(socket, "/VolumeDriver.Get", &bodies[i % args.volumes])?;
    }

    let mut get = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = k % args.volumes;
        let (took, body) = timed_call(socket, "/VolumeDriver.Get", &bodies[i])?;
        ensure!(
            body["Volume"]["Name"] == names[i].as_str()
                && body["Volume"]["Mountpoint"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "Get {} answered {body}",
            names[i]
        );
        get.push(took);
    }
    report.latency("get", "Get", &stats(&get), Some(AIM_GET_P99_US));

    let mut path = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 7 + 3) % args.volumes;
        let (took, body) = timed_call(socket, "/VolumeDriver.Path", &bodies[i])?;
        ensure!(
            body["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Path {} answered {body}",
            names[i]
        );
        path.push(took);
    }
    report.latency("path", "Path", &stats(&path), Some(AIM_PATH_P99_US));

    // Same calls on one kept-alive connection: what the engine's client sees.
    let mut conn = KeepAlive::connect(socket)?;
    let mut get_ka = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 13 + 5) % args.volumes;
        let (took, body) = conn.call("/VolumeDriver.Get", &bodies[i])?;
        ensure!(
            body["Volume"]["Name"] == names[i].as_str(),
            "Get {} answered {body}",
            names[i]
        );
        get_ka.push(took);
    }
    report.latency("get_keepalive", "Get (keep-alive)", &stats(&get_ka), None);
    let mut path_ka = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 11 + 1) % args.volumes;
        let (took, _) = conn.call("/VolumeDriver.Path", &bodies[i])?;
        path_ka.push(took);
    }
    report.latency(
        "path_keepalive",
        "Path (keep-alive)",
        &stats(&path_ka),
        None,
    );
    drop(conn);

    // Mount+Unmount: one pair is one sample; each pair a distinct volume (cycling when there
    // are fewer volumes than samples) and a fresh mount id.
    let mut mount_pairs = Vec::with_capacity(args.mount_samples);
    let mut mounts = Vec::with_capacity(args.mount_samples);
    let mut unmounts = Vec::with_capacity(args.mount_samples);
    for k in 0..args.mount_samples {
        let i = (k * 17 + 9) % args.volumes;
        let body = json!({ "Name": names[i], "ID": format!("bench-mount-{k:05}") })
            .to_string()
            .into_bytes();
        let (m, answer) = timed_call(socket, "/VolumeDriver.Mount", &body)?;
        ensure!(
            answer["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Mount {} answered {answer}",
            names[i]
        );
        let (u, _) = timed_call(socket, "/VolumeDriver.Unmount", &body)?;
        mounts.push(m);
        unmounts.push(u);
        mount_pairs.push(m + u);
    }
    report.latency(
        "mount_unmount",
        "Mount+Unmount (pair)",
        &stats(&mount_pairs),
        None,
    );
    report.latency("mount", "  of which Mount", &stats(&mounts), None);
    report.latency("unmount", "  of which Unmount", &stats(&unmounts), None);
    let leftover = daemon.kernel_mounts();
    ensure!(
        leftover
            .iter()
            .all(|p| !p.starts_with(daemon.root.join("mounts"))),
        "volumes still mounted after Unmount: {leftover:?}"
    );

    for _ in 0..5.min(args.list_samples) {
        timed_call(socket, "/VolumeDriver.List", b"{}")?;
    }
    let mut list = Vec::with_capacity(args.list_samples);
    for _ in 0..args.list_samples {
        let (took, body) = timed_call(socket, "/VolumeDriver.List", b"{}")?;
        let count = body["Volumes"].as_array().map_or(0, Vec::len);
        ensure!(
            count == args.volumes,
            "List answered {count} volumes, expected {}",
            args.volumes
        );
        list.push(took);
    }
    report.latency("list", "List", &stats(&list), Some(AIM_LIST_P99_US));
    Ok(())
}
