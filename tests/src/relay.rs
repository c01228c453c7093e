//! A TCP relay inside a test host, to cut a connection at a chosen byte.
//!
//! [`Relay::start`] listens on a port of a host (its thread enters the host's network
//! namespace: `setns` changes only the calling thread) and forwards every connection to a
//! target address there, byte for byte, so TLS passes through untouched. [`Relay::cut_after`]
//! arms a cut: once that many bytes went from clients to the target (counted from the arming,
//! across connections), the connection carrying that byte is shut in both directions, as a
//! dropped link would be; [`Relay::stall_after`] arms a stall instead: the client's side is
//! shut, but the target's stays open and silent, as after a partition the target has not
//! noticed. [`Relay::forwarded`] tells how many bytes went to the target in all. The same on
//! the way back: [`Relay::cut_back_after`] cuts once that many bytes went from the target to
//! clients (a fetch or clone cut mid-stream), [`Relay::returned`] counts them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::netns::Host;

/// No cut armed.
const DISARMED: u64 = u64::MAX;

#[derive(Debug)]
struct Counters {
    /// Bytes still to pass before the cut, or [`DISARMED`].
    until_cut: AtomicU64,
    /// Bytes forwarded to the target since the relay started.
    forwarded: AtomicU64,
    /// Bytes still to pass from the target before a cut, or [`DISARMED`].
    back_until_cut: AtomicU64,
    /// Bytes forwarded from the target to clients since the relay started.
    returned: AtomicU64,
    /// Cuts made.
    cuts: AtomicU64,
    /// Whether the armed cut leaves the target's side open (a stall).
    stall: AtomicBool,
    /// The target's side of stalled connections, kept open until the relay is dropped.
    stalled: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A relay listening in a host.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

/// Enters the network namespace of `host` on this thread.
fn enter(host: &Host) {
    let file = std::fs::File::open(host.netns()).expect("open the host's namespace");
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("setns into the host's network namespace");
}

impl Relay {
    /// Relays `host`'s `port` to `target` (an address reachable from that host).
    pub fn start(host: &Host, port: u16, target: SocketAddr) -> Relay {
        let addr = SocketAddr::from((host.addr(), port));
        let counters = Arc::new(Counters {
            until_cut: AtomicU64::new(DISARMED),
            forwarded: AtomicU64::new(0),
            back_until_cut: AtomicU64::new(DISARMED),
            returned: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            stall: AtomicBool::new(false),
            stalled: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = counters.clone();
        let host = host.clone();
        thread::spawn(move || {
            enter(&host);
            let listener = TcpListener::bind(addr).expect("relay bind");
            ready_tx.send(()).expect("relay ready");
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                let host = host.clone();
                thread::spawn(move || {
                    enter(&host);
                    if let Ok(server) = TcpStream::connect(target) {
                        pipe(client, server, &shared);
                    }
                });
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the relay listens");
        Relay { addr, counters }
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the connection that carries the `bytes`-th byte from now (`None`: no cut).
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.counters.stall.store(false, Ordering::SeqCst);
        self.counters
            .until_cut
            .store(bytes.unwrap_or(DISARMED), Ordering::SeqCst);
    }

    /// Like [`Relay::cut_after`], but only the client's side is shut: the target's side of
    /// that connection stays open and gets nothing more.
    pub fn stall_after(&self, bytes: u64) {
        self.counters.stall.store(true, Ordering::SeqCst);
        self.counters.until_cut.store(bytes, Ordering::SeqCst);
    }

    /// Bytes forwarded from clients to the target so far.
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::SeqCst)
    }

    /// Cuts the connection that carries the `bytes`-th byte from the target to a client,
    /// from now (`None`: no cut).
    pub fn cut_back_after(&self, bytes: Option<u64>) {
        self.counters
            .back_until_cut
            .store(bytes.unwrap_or(DISARMED), Ordering::SeqCst);
    }

    /// Bytes forwarded from the target to clients so far.
    pub fn returned(&self) -> u64 {
        self.counters.returned.load(Ordering::SeqCst)
    }

    /// Cuts made so far.
    pub fn cuts(&self) -> u64 {
        self.counters.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop; it ends at its next connection.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// How many of `n` bytes may pass with `until_cut` bytes left before a cut, and whether the
/// cut falls in them (then it is disarmed).
fn take(until_cut: &AtomicU64, n: usize) -> (usize, bool) {
    let left = until_cut.load(Ordering::SeqCst);
    if left == DISARMED {
        (n, false)
    } else if (n as u64) < left {
        until_cut.store(left - n as u64, Ordering::SeqCst);
        (n, false)
    } else {
        until_cut.store(DISARMED, Ordering::SeqCst);
        (left as usize, true)
    }
}

/// Copies `from` to `to` until `from` closes, either fails, or the cut armed in `until_cut`
/// falls (then counted in `cuts`); counts what passed in `count`. Returns whether it cut.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    until_cut: &AtomicU64,
    count: &AtomicU64,
    cuts: &AtomicU64,
) -> bool {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let (pass, cut) = take(until_cut, n);
        if to.write_all(&buf[..pass]).is_err() {
            return false;
        }
        count.fetch_add(pass as u64, Ordering::SeqCst);
        if cut {
            cuts.fetch_add(1, Ordering::SeqCst);
            return true;
        }
    }
}

/// Forwards client to server (counting, cutting) and server to client (the same) until
/// either closes.
fn pipe(client: TcpStream, server: TcpStream, counters: &Arc<Counters>) {
    let back = {
        let (server, client, c) = (
            server.try_clone().unwrap(),
            client.try_clone().unwrap(),
            counters.clone(),
        );
        thread::spawn(move || {
            let (from, to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            if forward(from, to, &c.back_until_cut, &c.returned, &c.cuts) {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            } else {
                let _ = client.shutdown(Shutdown::Write);
            }
        })
    };
    let (from, to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let c = counters;
    if forward(from, to, &c.until_cut, &c.forwarded, &c.cuts) {
        let _ = client.shutdown(Shutdown::Both);
        if c.stall.load(Ordering::SeqCst) {
            // The target's side stays open and silent; the thread copying its answers back
            // ends on the client's shut side.
            c.stalled.lock().unwrap().push(server);
            return;
        }
        let _ = server.shutdown(Shutdown::Both);
    } else {
        let _ = server.shutdown(Shutdown::Write);
    }
    let _ = back.join();
}
