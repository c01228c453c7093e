//! A typed client of the daemon's REST API: one method per endpoint, taking and returning the
//! wire types of the `dvol-api` crate.
//!
//! Path segments (volume, branch names, revisions) are percent-encoded. The long calls
//! (commit, checkout, reset, fsck, gc) take a [`Progress`]: given a callback, they ask the
//! daemon to stream their progress and hand each event to it; given `None`, they ask for the
//! plain answer. A failure the daemon answers is a [`DaemonError`] carrying its message.

mod host;
mod http;

use anyhow::Result;
use dvol_api::{
    AddRemote, CloneRequest, IncomingPush, MoveRequest, MoveResult, PullRequest, PushRequest,
    RemoteView, TransferResult,
};
use dvol_api::{
    ChangeView, CheckoutRequest, CheckoutView, CommitRequest, CommitResult, CreateVolume,
    DiffQuery, FsckView, GcRequest, GcView, Health, LogView, NodeInfo, ProfileView, ProgressEvent,
    RefRequest, RefView, ReflogEntryView, ResetRequest, ResizeVolume, VolumeView, NDJSON,
};
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use host::Host;
pub use http::DaemonError;
use http::{decode, decode_stream, segment, success_body, Transport};

/// Where a long call shows its progress: `Some` asks the daemon to stream it and sees each
/// event; `None` asks for the plain answer only.
pub type OnProgress<'a> = Option<&'a mut dyn FnMut(&ProgressEvent)>;

/// A client of one daemon's REST API.
pub struct Client {
    transport: Transport,
}

/// `/v1/volumes/{name}`.
fn volume_path(name: &str) -> String {
    format!("/v1/volumes/{}", segment(name))
}

/// `/v1/volumes/{name}/{what}`.
fn volume_resource(name: &str, what: &str) -> String {
    format!("{}/{what}", volume_path(name))
}

/// `/v1/volumes/{name}/{kind}/{ref}`: one branch or tag.
fn ref_path(volume: &str, kind: &str, name: &str) -> String {
    format!("{}/{}", volume_resource(volume, kind), segment(name))
}

/// `body` as the JSON of a request.
fn json<B: Serialize>(body: &B) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(body)?)
}

impl Client {
    /// A client for `host`, sending `token` as a bearer token if given.
    pub fn new(host: Host, token: Option<String>) -> Self {
        Client {
            transport: Transport::new(host, token),
        }
    }

    /// Speaks TLS to a daemon reached over TCP, trusting only the CA of `tls`.
    pub fn with_tls(self, tls: dvol_plugin::tls::TlsClient) -> Self {
        Client {
            transport: self.transport.with_tls(tls),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.transport.send(Method::GET, path, None, None).await?;
        decode(response).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = Some(json(body)?);
        let response = self.transport.send(Method::POST, path, body, None).await?;
        decode(response).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .transport
            .send(Method::DELETE, path, None, None)
            .await?;
        success_body(response).await.map(drop)
    }

    /// `POST path` for a long call, streaming its progress when asked (see [`Progress`]).
    async fn post_long<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
        progress: OnProgress<'_>,
    ) -> Result<T> {
        let accept = progress.is_some().then_some(NDJSON);
        let response = self
            .transport
            .send(Method::POST, path, body, accept)
            .await?;
        match progress {
            Some(progress) => decode_stream(response, progress).await,
            None => decode(response).await,
        }
    }

    /// `GET /v1/health`: whether the daemon answers, and its version.
    pub async fn health(&self) -> Result<Health> {
        self.get("/v1/health").await
    }

    /// `GET /v1/node`: this host, its backends and room per profile.
    pub async fn node(&self) -> Result<NodeInfo> {
        self.get("/v1/node").await
    }

    /// `GET /v1/cluster/nodes`: the cluster's live nodes.
    pub async fn cluster_nodes(&self) -> Result<dvol_api::ClusterNodes> {
        self.get("/v1/cluster/nodes").await
    }

    /// `GET /v1/cluster/volumes`: the cluster's volumes.
    pub async fn cluster_volumes(&self) -> Result<dvol_api::ClusterVolumes> {
        self.get("/v1/cluster/volumes").await
    }

    /// `GET /v1/profiles`: the configured profiles as they resolve on this host.
    pub async fn profiles(&self) -> Result<Vec<ProfileView>> {
        self.get("/v1/profiles").await
    }

    /// `GET /v1/volumes`: every volume.
    pub async fn volumes(&self) -> Result<Vec<VolumeView>> {
        self.get("/v1/volumes").await
    }

    /// `POST /v1/volumes`: creates a volume, or answers the one of that name that exists.
    pub async fn create_volume(&self, request: &CreateVolume) -> Result<VolumeView> {
        self.post("/v1/volumes", request).await
    }

    /// `GET /v1/volumes/{name}`: one volume.
    pub async fn volume(&self, name: &str) -> Result<VolumeView> {
        self.get(&volume_path(name)).await
    }

    /// `POST /v1/volumes/{name}/resize`: grows a volume.
    pub async fn resize_volume(&self, name: &str, request: &ResizeVolume) -> Result<VolumeView> {
        self.post(&volume_resource(name, "resize"), request).await
    }

    /// `DELETE /v1/volumes/{name}`: removes a volume and its data.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.delete(&volume_path(name)).await
    }

    /// `GET /v1/volumes/{name}/commits`: the volume's log.
    pub async fn log(&self, volume: &str) -> Result<LogView> {
        self.get(&volume_resource(volume, "commits")).await
    }

    /// `POST /v1/volumes/{name}/commits`: records the volume's files as a commit.
    pub async fn commit(
        &self,
        volume: &str,
        request: &CommitRequest,
        progress: OnProgress<'_>,
    ) -> Result<CommitResult> {
        let path = volume_resource(volume, "commits");
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `GET /v1/volumes/{name}/status`: the changes not committed yet.
    pub async fn status(&self, volume: &str) -> Result<Vec<ChangeView>> {
        self.get(&volume_resource(volume, "status")).await
    }

    /// `GET /v1/volumes/{name}/branches`.
    pub async fn branches(&self, volume: &str) -> Result<Vec<RefView>> {
        self.get(&volume_resource(volume, "branches")).await
    }

    /// `POST /v1/volumes/{name}/branches`: a new branch.
    pub async fn create_branch(&self, volume: &str, request: &RefRequest) -> Result<RefView> {
        self.post(&volume_resource(volume, "branches"), request)
            .await
    }

    /// `DELETE /v1/volumes/{name}/branches/{branch}`.
    pub async fn delete_branch(&self, volume: &str, branch: &str) -> Result<()> {
        self.delete(&ref_path(volume, "branches", branch)).await
    }

    /// `DELETE /v1/volumes/{name}/tags/{tag}`.
    pub async fn delete_tag(&self, volume: &str, tag: &str) -> Result<()> {
        self.delete(&ref_path(volume, "tags", tag)).await
    }

    /// `GET /v1/volumes/{name}/reflog[?limit=N]`: the moves of HEAD and the branches, newest
    /// first.
    pub async fn reflog(&self, volume: &str, limit: Option<usize>) -> Result<Vec<ReflogEntryView>> {
        let mut path = volume_resource(volume, "reflog");
        if let Some(n) = limit {
            path.push_str(&format!("?limit={n}"));
        }
        self.get(&path).await
    }

    /// `GET /v1/volumes/{name}/tags`.
    pub async fn tags(&self, volume: &str) -> Result<Vec<RefView>> {
        self.get(&volume_resource(volume, "tags")).await
    }

    /// `POST /v1/volumes/{name}/tags`: a new tag.
    pub async fn create_tag(&self, volume: &str, request: &RefRequest) -> Result<RefView> {
        self.post(&volume_resource(volume, "tags"), request).await
    }

    /// `POST /v1/volumes/{name}/checkout`: puts a branch or commit into the volume; refused
    /// (`container_removed_on_stop`) when a container run with `--rm` uses it, unless
    /// `request.stop_removable`.
    pub async fn checkout(
        &self,
        volume: &str,
        request: &CheckoutRequest,
        progress: OnProgress<'_>,
    ) -> Result<CheckoutView> {
        let path = volume_resource(volume, "checkout");
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `POST /v1/volumes/{name}/reset`: moves the branch and the files to a revision; refused
    /// like a checkout when a container run with `--rm` uses the volume, unless
    /// `request.stop_removable`.
    pub async fn reset(
        &self,
        volume: &str,
        request: &ResetRequest,
        progress: OnProgress<'_>,
    ) -> Result<CheckoutView> {
        let path = volume_resource(volume, "reset");
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `GET /v1/volumes/{name}/diff?from=REV[&to=REV]`: the paths that differ.
    pub async fn diff(&self, volume: &str, query: &DiffQuery) -> Result<Vec<ChangeView>> {
        let mut params = Vec::new();
        if let Some(from) = &query.from {
            params.push(format!("from={}", segment(from)));
        }
        if let Some(to) = &query.to {
            params.push(format!("to={}", segment(to)));
        }
        let mut path = volume_resource(volume, "diff");
        if !params.is_empty() {
            path.push('?');
            path.push_str(&params.join("&"));
        }
        self.get(&path).await
    }

    /// `POST /v1/fsck`: verifies every stored object of every volume.
    pub async fn fsck(&self, progress: OnProgress<'_>) -> Result<FsckView> {
        self.post_long("/v1/fsck", None, progress).await
    }

    /// `POST /v1/gc`: deletes the stored objects nothing refers to any more, but for the
    /// grace period `request` sets.
    pub async fn gc(&self, request: &GcRequest, progress: OnProgress<'_>) -> Result<GcView> {
        self.post_long("/v1/gc", Some(json(request)?), progress)
            .await
    }

    /// `GET /v1/incoming`: the pushes other hosts are sending to the daemon.
    pub async fn incoming(&self) -> Result<Vec<IncomingPush>> {
        self.get("/v1/incoming").await
    }

    /// `GET /v1/remotes`: the remotes the daemon keeps.
    pub async fn remotes(&self) -> Result<Vec<RemoteView>> {
        self.get("/v1/remotes").await
    }

    /// `POST /v1/remotes`: adds a remote.
    pub async fn add_remote(&self, request: &AddRemote) -> Result<RemoteView> {
        self.post("/v1/remotes", request).await
    }

    /// `DELETE /v1/remotes/{remote}`: forgets a remote.
    pub async fn remove_remote(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/remotes/{}", segment(name))).await
    }

    /// `POST /v1/volumes/{name}/push`: sends a branch and its history to a remote.
    pub async fn push(
        &self,
        volume: &str,
        request: &PushRequest,
        progress: OnProgress<'_>,
    ) -> Result<TransferResult> {
        let path = volume_resource(volume, "push");
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `POST /v1/volumes/{name}/fetch` or `/pull` (`what`): brings a remote's branch here.
    pub async fn pull(
        &self,
        volume: &str,
        what: &str,
        request: &PullRequest,
        progress: OnProgress<'_>,
    ) -> Result<TransferResult> {
        let path = volume_resource(volume, what);
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `POST /v1/volumes/{name}/move`: hands the volume over to a remote.
    pub async fn move_volume(
        &self,
        volume: &str,
        request: &MoveRequest,
        progress: OnProgress<'_>,
    ) -> Result<MoveResult> {
        let path = volume_resource(volume, "move");
        self.post_long(&path, Some(json(request)?), progress).await
    }

    /// `POST /v1/clone`: makes a local volume from a remote's.
    pub async fn clone_remote(
        &self,
        request: &CloneRequest,
        progress: OnProgress<'_>,
    ) -> Result<TransferResult> {
        self.post_long("/v1/clone", Some(json(request)?), progress)
            .await
    }
}
