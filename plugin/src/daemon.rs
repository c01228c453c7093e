//! Running the daemon: open the state, bind the sockets, serve until told to stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvol_backends::directory::DirectoryBackend;
use dvol_backends::loop_device::LoopBackend;
use dvol_backends::lvm::LvmBackend;
use dvol_backends::{Backend, BackendKind};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::body::MAX_BODY_BYTES;
use crate::cluster::{Cluster, JoinAs};
use crate::config::{Config, ConfigError, TcpLimits};
use crate::containers::{Containers, DockerEngine};
use crate::error::ServiceError;
use crate::privileges::Privileges;
use crate::profile::HostBackends;
use crate::rest::ApiError;
use crate::root_lock::{RootLock, RootLockError};
use crate::service::cluster::ClusterLink;
use crate::service::VolumeService;
use crate::tls::TlsError;
use crate::volume::Layout;
use crate::{docker, readiness, rest};

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/dvol";
/// Default configuration file; optional.
pub const DEFAULT_CONFIG: &str = "/etc/dvol/config.toml";
/// Where the Docker Engine looks for the plugin.
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/dvol.sock";
/// Where the CLI finds the REST API.
pub const DEFAULT_API_SOCKET: &str = "/run/dvol/dvol.sock";

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// State root.
    pub root: PathBuf,
    /// Configuration file; with `config_required` false a missing file means built-in profiles.
    pub config: PathBuf,
    /// Whether the configuration file must exist (it was named explicitly).
    pub config_required: bool,
    /// Docker plugin socket.
    pub plugin_socket: PathBuf,
    /// REST API unix socket.
    pub api_socket: PathBuf,
    /// Optional TCP address for the REST API.
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must send.
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain of the TCP listener; with `tls_key`, the listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The volume driver name the Docker Engine knows this daemon by (`None`: the plugin
    /// socket's name without `.sock`). It picks out the containers using a volume, which
    /// checkout and reset stop and a commit with `pause` pauses. A managed (v2) plugin needs
    /// it: its socket is named by its `config.json`, while the engine knows it by the
    /// plugin's name and tag (e.g. `dvol:latest`).
    pub docker_driver: Option<String>,
    /// Cluster mode: the registry in etcd and this node's place in it.
    pub cluster: Option<ClusterOptions>,
}

/// How the daemon joins a cluster (`--cluster URL`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The etcd endpoints (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// This node's name in the cluster (`None`: the host name).
    pub node_name: Option<String>,
    /// The CA that signs the other nodes' TLS certificates (`None`: they speak plain TCP).
    pub peer_ca: Option<PathBuf>,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state could not be opened.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A socket could not be bound or served.
    #[error("socket {path}: {source}")]
    Socket {
        /// The socket's path or address.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("socket {0} is in use by a running process (another dvol daemon?); stop it or choose another socket")]
    SocketBusy(PathBuf),
    /// Cluster mode was asked for without what it needs.
    #[error("--cluster: {0}")]
    ClusterOptions(String),
    /// TCP was asked for without a usable token.
    #[error("--listen needs --token-file naming a file with a non-empty bearer token: {0}")]
    Token(String),
    /// Another daemon runs on the state root, or its lock could not be taken.
    #[error(transparent)]
    RootLock(#[from] RootLockError),
    /// The TLS options do not go together.
    #[error("{0}")]
    TlsOptions(&'static str),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Probes the backends the configuration's profiles need. A backend that cannot run here is
/// recorded with the reason, and its profiles are reported unavailable; only a broken state
/// root is an error.
pub fn probe_backends(layout: &Layout, config: &Config) -> Result<HostBackends, DaemonError> {
    let directory = DirectoryBackend::open(layout.backend_dir(BackendKind::Directory))
        .map_err(ServiceError::Host)?;
    let loop_device = LoopBackend::open(layout.backend_dir(BackendKind::Loop))
        .map(|b| {
            b.with_reserve(config.reserve)
                .with_freeze_limit(config.freeze_limit)
        })
        .map(|b| Arc::new(b) as Arc<dyn Backend>)
        .map_err(|e| e.to_string());
    let mut lvm = BTreeMap::new();
    for profile in config.profiles.values() {
        if let (BackendKind::Lvm, Some(vg), Some(pool)) =
            (profile.backend, &profile.volume_group, &profile.thin_pool)
        {
            let ratio = profile.max_overprovision.unwrap_or(1.0);
            lvm.entry((vg.clone(), pool.clone())).or_insert_with(|| {
                LvmBackend::probe(vg, pool, ratio)
                    .map(|b| Arc::new(b) as Arc<dyn Backend>)
                    .map_err(|e| e.to_string())
            });
        }
    }
    Ok(HostBackends {
        directory: Arc::new(directory),
        loop_device,
        lvm,
    })
}

/// Opens the volume service described by `options`.
pub fn open_service(options: &DaemonOptions) -> Result<VolumeService, DaemonError> {
    let config = Config::load(&options.config, options.config_required)?;
    open_service_with(options, &config)
}

/// Opens the volume service described by `options` with the loaded `config`.
fn open_service_with(
    options: &DaemonOptions,
    config: &Config,
) -> Result<VolumeService, DaemonError> {
    let layout = Layout::new(&options.root);
    let host = probe_backends(&layout, config)?;
    Ok(VolumeService::open(layout, config, host)?)
}

/// Binds a unix socket with mode 0600, replacing a stale socket file but never a live one.
pub async fn bind_unix(path: &Path) -> Result<UnixListener, DaemonError> {
    let failed = |source| DaemonError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(DaemonError::SocketBusy(path.to_path_buf()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => info!(socket = %path.display(), "replaced stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

/// Joins the cluster `cluster` names: this node's record, its lease and watch, capacity
/// reports every [`CAPACITY_EVERY`], and reconciling its volumes after each (re)connection.
/// Returns the node's name.
async fn join_cluster(
    service: &Arc<VolumeService>,
    cluster: &ClusterOptions,
    options: &DaemonOptions,
    tls: bool,
) -> Result<String, DaemonError> {
    let bad = |m: String| DaemonError::ClusterOptions(m);
    let listen = options.listen.ok_or_else(|| {
        bad("cluster mode needs --listen ADDR (and --token-file): the other nodes move volumes through it".into())
    })?;
    if listen.ip().is_unspecified() {
        return Err(bad(format!(
            "--listen {listen} is every address: give the one the other nodes reach this node at"
        )));
    }
    let token = read_token(options.token_file.as_deref())?;
    let ca_pem = match &cluster.peer_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| bad(format!("cannot read --cluster-ca {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let info = service.blocking(|s| Ok(s.node_info())).await?;
    let name = cluster.node_name.clone().unwrap_or(info.hostname.clone());
    crate::names::VolumeName::parse(&name).map_err(|e| {
        bad(format!(
            "node name {name:?} is not a valid name ({e}); give --node-name"
        ))
    })?;
    let node = dvol_api::ClusterNode {
        name: name.clone(),
        id: info.id,
        address: Some(format!("tcp://{listen}")),
        tls,
        version: info.version,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        profiles: info.profiles,
    };
    let registry = Cluster::join(JoinAs {
        endpoints: cluster.endpoints.clone(),
        node,
    })
    .await
    .map_err(|e| bad(e.to_string()))?;
    let weak = Arc::downgrade(service);
    registry.on_resync(Box::new(move |first| {
        if let Some(service) = weak.upgrade() {
            tokio::task::spawn_blocking(move || service.reconcile_cluster(first));
        }
    }));
    service.join_cluster(ClusterLink {
        registry: registry.clone(),
        token,
        ca_pem,
    });
    let weak = Arc::downgrade(service);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CAPACITY_EVERY).await;
            let Some(service) = weak.upgrade() else {
                return;
            };
            let _ = service
                .blocking(|s| {
                    if let Some(cluster) = s.cluster() {
                        cluster.report_capacity(s.node_info().profiles);
                    }
                    Ok(())
                })
                .await;
        }
    });
    info!(node = %name, endpoints = %registry.endpoints(), "cluster mode");
    Ok(name)
}

/// How often a node of a cluster publishes its free capacity.
const CAPACITY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the bearer token from `path`, warning when group or others may read the file.
fn read_token(path: Option<&Path>) -> Result<String, DaemonError> {
    let path = path.ok_or_else(|| DaemonError::Token("no --token-file given".into()))?;
    let token = std::fs::read_to_string(path)
        .map_err(|e| DaemonError::Token(format!("{}: {e}", path.display())))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(DaemonError::Token(format!("{} is empty", path.display())));
    }
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warn!(
                token_file = %path.display(),
                "the token file {} is readable by group or others (mode {mode:03o}): anyone who \
                 can read it can call the API; restrict it with `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(token)
}

/// Compares two secrets in time that depends on neither their contents nor their lengths:
/// both are hashed (BLAKE3) and the digests compared in constant time.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    // blake3::Hash's equality is constant-time.
    blake3::hash(a) == blake3::hash(b)
}

/// Warns when the TCP listener without TLS is reachable beyond this host: the token and
/// everything else travel in clear text.
fn warn_if_exposed(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        warn!(
            addr = %addr,
            "the REST API listens on {addr}, which is not a loopback address, without TLS: \
             the bearer token and all data travel in clear text; give --tls-cert and \
             --tls-key (clients then pass --ca), or listen on 127.0.0.1 and reach it through \
             an SSH tunnel"
        );
    }
}

/// The TLS configuration of the TCP listener, if `options` ask for one: `--tls-cert` and
/// `--tls-key` come together, and only with `--listen`.
fn tls_config(options: &DaemonOptions) -> Result<Option<Arc<rustls::ServerConfig>>, DaemonError> {
    match (&options.tls_cert, &options.tls_key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(DaemonError::TlsOptions(
            "--tls-cert needs --tls-key naming the certificate's private key",
        )),
        (None, Some(_)) => Err(DaemonError::TlsOptions(
            "--tls-key needs --tls-cert naming the certificate chain",
        )),
        (Some(_), Some(_)) if options.listen.is_none() => Err(DaemonError::TlsOptions(
            "--tls-cert and --tls-key secure the TCP listener: they need --listen ADDR",
        )),
        (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key)?)),
    }
}

/// How often at most the TCP connection limit being reached is logged.
const LIMIT_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `router` on the TCP `listener` until `stop` completes, within `limits`: a client
/// has [`TcpLimits::header_timeout`] to send a complete request header (on a new connection
/// and between the requests of a kept-alive one: an idle connection is closed after that
/// long), and at most [`TcpLimits::max_connections`] connections are served at once. At the
/// limit the daemon stops accepting: further connections wait in the kernel's listen backlog
/// until one closes, and a line in the log says so. At `stop` the connections finish their
/// current request and close.
///
/// With `tls`, every connection speaks TLS: its handshake runs in the connection's own task
/// and must finish within the header time-out too, else the connection is closed.
async fn serve_tcp(
    listener: TcpListener,
    router: Router,
    limits: TcpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    // The limit is reported at most once a minute, with how often it was hit meanwhile, so
    // that a flood cannot flood the log too.
    let mut last_report: Option<tokio::time::Instant> = None;
    let mut hits_since_report = 0u64;
    tokio::pin!(stop);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                hits_since_report += 1;
                if last_report.is_none_or(|at| at.elapsed() >= LIMIT_REPORT_INTERVAL) {
                    warn!(
                        limit = limits.max_connections,
                        times = hits_since_report,
                        "TCP connection limit reached: {} connections are being served; \
                         further connections wait in the listen backlog until one closes \
                         (tcp_max_connections in the configuration; reached {} time(s) since \
                         the last report)",
                        limits.max_connections,
                        hits_since_report
                    );
                    last_report = Some(tokio::time::Instant::now());
                    hits_since_report = 0;
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = &mut stop => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!(error = %e, "cannot accept a TCP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut close = close_rx.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                return serve_connection(stream, service, limits, close, peer).await;
            };
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
            let handshake = tokio::select! {
                handshake = handshake => handshake,
                () = closing(&mut close) => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_connection(stream, service, limits, close, peer).await,
                Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(
                    peer = %peer,
                    timeout_ms = limits.header_timeout.as_millis() as u64,
                    "TLS handshake not finished within the header time-out; connection closed"
                ),
            }
        });
    }
    let _ = close_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Completes when the daemon stops.
async fn closing(close: &mut watch::Receiver<bool>) {
    let _ = close.wait_for(|close| *close).await;
}

/// Serves HTTP/1 on one accepted connection (plain or TLS) until it ends, or finishes the
/// current request and closes it once `close` turns true.
async fn serve_connection<S>(
    stream: S,
    service: TowerToHyperService<Router>,
    limits: TcpLimits,
    mut close: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closing(&mut close) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(peer = %peer, error = %e, "TCP connection ended");
    }
}

/// Requires `Authorization: Bearer <token>` on every request.
pub fn with_bearer_token(router: Router, token: String) -> Router {
    let token = Arc::new(token);
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let token = token.clone();
        async move {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match presented {
                Some(p) if same_secret(p.as_bytes(), token.as_bytes()) => next.run(request).await,
                _ => unauthorized(),
            }
        }
    }))
}

/// Reads each request's whole body within `limit` of its header, so a client that stalls
/// mid-body cannot hold a connection (and a slot of [`TcpLimits::max_connections`]) for
/// ever: a late body is answered 408 `body_timeout` and the connection closed; a body over
/// [`MAX_BODY_BYTES`] is answered 413 `body_too_large` as the handlers would.
pub fn with_body_deadline(router: Router, limit: Duration) -> Router {
    router.layer(middleware::from_fn(move |request: Request, next: Next| async move {
        if crate::rest::is_object_stream(request.uri().path()) {
            // Object streams are long; their receiver drops one idle for too long.
            return next.run(request).await;
        }
        let (parts, body) = request.into_parts();
        let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(bytes)) => {
                next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                    .await
            }
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                let (status, code) = if too_large {
                    (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                } else {
                    (StatusCode::BAD_REQUEST, "bad_body")
                };
                let mut response = ApiError::new(
                    status,
                    code,
                    format!(
                        "request body rejected: {e}; bodies are JSON of at most {MAX_BODY_BYTES} bytes"
                    ),
                )
                .into_response();
                close_after(&mut response);
                response
            }
            Err(_) => {
                let mut response = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s of its header; send the \
                         whole body right after the header",
                        limit.as_secs()
                    ),
                )
                .into_response();
                close_after(&mut response);
                response
            }
        }
    }))
}

/// Marks `response` as the connection's last: the rest of a refused body is not read.
fn close_after(response: &mut Response) {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
}

fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token; send Authorization: Bearer <token from the daemon's --token-file>",
    )
    .into_response()
}

/// The unix sockets this start bound, removed when dropped: on a failed start and at
/// shutdown, and never a socket this process did not bind (another daemon's stays).
#[derive(Debug, Default)]
struct BoundSockets(Vec<PathBuf>);

impl BoundSockets {
    /// Binds `path` (see [`bind_unix`]) and remembers it for removal.
    async fn bind(&mut self, path: &Path) -> Result<UnixListener, DaemonError> {
        let listener = bind_unix(path).await?;
        self.0.push(path.to_path_buf());
        Ok(listener)
    }
}

impl Drop for BoundSockets {
    fn drop(&mut self) {
        for socket in &self.0 {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// How long the daemon lets running calls finish at shutdown before it exits anyway (the
/// unit's `TimeoutStopSec=` leaves room for it).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs the daemon until `shutdown` completes, then stops accepting calls, lets running ones
/// finish and removes its sockets. Mounted volumes stay mounted: containers keep running.
///
/// The state root is locked first ([`RootLock`]): a second daemon on the same root is
/// refused before it touches any state or socket. A start that fails removes the sockets it
/// bound, and only those.
///
/// What the daemon cannot do with its privileges is logged at start, one warning each
/// ([`Privileges::warn_limits`]); it starts all the same.
///
/// Under a service manager (`$NOTIFY_SOCKET`, systemd's `Type=notify`) it says where it is
/// ([`readiness`]): `READY=1` once the plugin socket, the REST API socket and the TCP
/// listener (if any) serve, `STOPPING=1` when it begins to shut down, and a `STATUS=` line
/// with each step and with the error that stopped it, if one did.
pub async fn run(
    options: DaemonOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let result = serve(options, shutdown).await;
    if let Err(e) = &result {
        readiness::status(&format!("failed: {e}"));
    }
    result
}

/// [`run`] but for the last status line.
async fn serve(
    options: DaemonOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let tls = tls_config(&options)?;
    let token = match options.listen {
        Some(_) => Some(read_token(options.token_file.as_deref())?),
        None => None,
    };
    let _root_lock = RootLock::take(&options.root)?;
    Privileges::probe().warn_limits();
    readiness::status(&format!(
        "opening the state in {} and dropping stale mounts",
        options.root.display()
    ));
    let opts = options.clone();
    let (service, config) = tokio::task::spawn_blocking(move || {
        let config = Config::load(&opts.config, opts.config_required)?;
        let service = open_service_with(&opts, &config)?;
        Ok::<_, DaemonError>((service, config))
    })
    .await
    .expect("service open task")?;
    let mut service = service;
    let driver = options.docker_driver.clone().or_else(|| {
        let stem = options.plugin_socket.file_stem()?;
        stem.to_str().map(str::to_string)
    });
    if let Some(driver) = driver {
        info!(driver = %driver, "the Docker Engine knows this daemon as volume driver {driver}");
        service.set_containers(Containers::new(driver, Arc::new(DockerEngine::default())));
    }
    let service = Arc::new(service);
    service
        .blocking(|s| {
            s.drop_all_stale_mounts();
            Ok(())
        })
        .await?;
    info!(root = %options.root.display(), volumes = service.list().len(), "state opened");
    // Before any socket serves: no mount may come in before ownership can be checked.
    let cluster_node = match &options.cluster {
        Some(cluster) => Some(join_cluster(&service, cluster, &options, tls.is_some()).await?),
        None => None,
    };

    let mut sockets = BoundSockets::default();
    let plugin = sockets.bind(&options.plugin_socket).await?;
    let api_unix = sockets.bind(&options.api_socket).await?;
    let tcp = match options.listen {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Socket {
                        path: addr.to_string(),
                        source,
                    })?,
            )
        }
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    let plugin_router = docker::router(service.clone());
    let stop = stopped();
    servers.spawn(async move {
        axum::serve(plugin, plugin_router)
            .with_graceful_shutdown(stop)
            .await
    });
    let api_router = rest::router(service.clone());
    let stop = stopped();
    let unix_router = api_router.clone();
    servers.spawn(async move {
        axum::serve(api_unix, unix_router)
            .with_graceful_shutdown(stop)
            .await
    });
    let mut serving = format!(
        "plugin socket {}, REST API socket {}",
        options.plugin_socket.display(),
        options.api_socket.display()
    );
    if let (Some(listener), Some(token)) = (tcp, token) {
        let addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Socket {
                path: "TCP listener".into(),
                source,
            })?;
        info!(
            addr = %addr,
            header_timeout_seconds = config.tcp.header_timeout.as_secs(),
            max_connections = config.tcp.max_connections,
            "{}",
            match tls {
                Some(_) => "REST API on TCP with TLS (bearer token required)",
                None => "REST API on TCP (bearer token required)",
            }
        );
        if tls.is_none() {
            warn_if_exposed(addr);
        }
        let router = rest::with_api_header(with_bearer_token(
            with_body_deadline(api_router, config.tcp.header_timeout),
            token,
        ));
        let stop = stopped();
        let limits = config.tcp;
        servers.spawn(serve_tcp(listener, router, limits, tls, stop));
        serving.push_str(&format!(", REST API on TCP {addr}"));
    }
    if let Some(node) = &cluster_node {
        serving.push_str(&format!(", cluster node {node}"));
    }
    info!(plugin = %options.plugin_socket.display(), api = %options.api_socket.display(), "serving");
    // Every listener is bound (connections queue until their server takes them) and served:
    // units ordered after this one, the Docker Engine first, may start now.
    readiness::ready(&format!(
        "serving {} volumes: {serving}",
        service.list().len()
    ));
    // Starting a container asks this plugin to mount its volume: only once it serves.
    tokio::spawn({
        let service = service.clone();
        async move { service.resume_interrupted_operations().await }
    });

    let mut result = Ok(());
    tokio::select! {
        () = shutdown => info!("shutting down"),
        Some(ended) = servers.join_next() => {
            if let Ok(Err(source)) = ended {
                result = Err(DaemonError::Socket { path: "server".into(), source });
            }
        }
    }
    readiness::stopping(&match &result {
        Ok(()) => format!(
            "stopping: letting running calls finish (at most {} s)",
            DRAIN_LIMIT.as_secs()
        ),
        Err(e) => format!("stopping after an error: {e}"),
    });
    let _ = stop_tx.send(true);
    let drain = async { while servers.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_LIMIT, drain).await.is_err() {
        tracing::warn!(
            "calls still running after {} s; exiting anyway",
            DRAIN_LIMIT.as_secs()
        );
    }
    drop(sockets);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A router that echoes the length of the body it got, behind a 200 ms body deadline.
    fn echo() -> Router {
        let router = Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        with_body_deadline(router, Duration::from_millis(200))
    }

    async fn answer(body: Body) -> (StatusCode, Option<String>, serde_json::Value, String) {
        let request = axum::http::Request::post("/").body(body).unwrap();
        let response = echo().oneshot(request).await.unwrap();
        let status = response.status();
        let connection = response
            .headers()
            .get(header::CONNECTION)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, connection, json, text)
    }

    #[tokio::test]
    async fn a_whole_body_in_time_reaches_the_handler() {
        let (status, _, _, text) = answer(Body::from("{\"name\":\"x\"}")).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "12"));
    }

    #[tokio::test]
    async fn a_stalled_body_is_answered_408_and_closes_the_connection() {
        let stalled = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
        let (status, connection, json, _) = answer(Body::from_stream(stalled)).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(connection.as_deref(), Some("close"));
        assert_eq!(json["error"]["code"], "body_timeout", "{json}");
    }

    #[tokio::test]
    async fn an_oversized_body_is_answered_413() {
        let (status, connection, json, _) =
            answer(Body::from(vec![b' '; MAX_BODY_BYTES + 1])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
        assert_eq!(connection.as_deref(), Some("close"));
        assert_eq!(json["error"]["code"], "body_too_large", "{json}");
        let (status, _, _, text) = answer(Body::from(vec![b' '; MAX_BODY_BYTES])).await;
        assert_eq!((status, text), (StatusCode::OK, MAX_BODY_BYTES.to_string()));
    }

    #[tokio::test]
    async fn a_tls_client_that_never_says_hello_is_closed_while_others_are_served() {
        use tokio::io::AsyncReadExt;

        let pki = crate::tls::test_pki::make();
        let config = crate::tls::server_config(&pki.cert, &pki.key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = TcpLimits {
            header_timeout: Duration::from_secs(2),
            max_connections: 4,
        };
        let router = Router::new().route("/", axum::routing::get(|| async { "served" }));
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let stop = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        let server = tokio::spawn(serve_tcp(listener, router, limits, Some(config), stop));

        // Connects and never sends its ClientHello.
        let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();

        let client = crate::tls::TlsClient::from_ca_pem(&pki.ca).unwrap();
        let stream = crate::tls::connect("127.0.0.1", port, Some(&client), limits.header_timeout)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = axum::http::Request::get("/")
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"served");
        // Served while the silent client's handshake was still pending.
        assert!(
            started.elapsed() < limits.header_timeout,
            "the second client waited for the first one's handshake"
        );
        let mut byte = [0u8; 1];
        assert!(
            matches!(silent.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the silent client was closed before the header time-out"
        );

        // Then closed at the header time-out, without a byte.
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
            .await
            .expect("the silent client is closed after the header time-out");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(started.elapsed() >= limits.header_timeout);

        let _ = stop_tx.send(true);
        server.await.unwrap().unwrap();
    }

    #[test]
    fn tls_options_come_together_and_only_with_a_listener() {
        let pki = crate::tls::test_pki::make();
        let options = |listen: bool, cert: bool, key: bool| DaemonOptions {
            root: pki.dir.path().join("root"),
            config: pki.dir.path().join("config.toml"),
            config_required: false,
            plugin_socket: pki.dir.path().join("plugin.sock"),
            api_socket: pki.dir.path().join("api.sock"),
            listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
            token_file: None,
            tls_cert: cert.then(|| pki.cert.clone()),
            tls_key: key.then(|| pki.key.clone()),
            docker_driver: None,
            cluster: None,
        };
        let refused = |o: DaemonOptions| match tls_config(&o) {
            Err(DaemonError::TlsOptions(message)) => message,
            other => panic!("{:?}", other.map(|c| c.is_some())),
        };
        assert!(refused(options(true, true, false)).contains("--tls-cert needs --tls-key"));
        assert!(refused(options(true, false, true)).contains("--tls-key needs --tls-cert"));
        assert!(refused(options(false, true, true)).contains("need --listen"));
        assert!(tls_config(&options(false, false, false)).unwrap().is_none());
        assert!(tls_config(&options(true, true, true)).unwrap().is_some());
    }

    #[test]
    fn secrets_are_equal_only_when_they_are_the_same_bytes() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(same_secret(b"", b""));
        for other in [&b""[..], b"s", b"s3cre", b"s3cret!", b"S3cret", b"s3creT"] {
            assert!(!same_secret(b"s3cret", other), "{other:?}");
        }
        assert!(!same_secret(&[b'a'; 4000], b"a"));
    }
}
