//! Cluster mode: the nodes and volumes of the registry every daemon of a cluster shares
//! (`dvol daemon --cluster URL`), as `GET /v1/cluster/nodes` and `GET /v1/cluster/volumes`
//! show them. The daemons keep these same records in etcd, as JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::node::ProfileCapacity;

/// One daemon of the cluster. Its record lives as long as the daemon's lease: a node that
/// stopped renewing it drops out of the list within the lease's time to live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    /// The node's name in the cluster (`--node-name`, else the host name).
    pub name: String,
    /// The host's stable id.
    pub id: Uuid,
    /// Where other nodes reach its REST API (`tcp://IP:PORT`), if it listens on TCP.
    pub address: Option<String>,
    /// Whether that address speaks TLS.
    pub tls: bool,
    /// The dvol version it runs.
    pub version: String,
    /// When the daemon joined (RFC 3339).
    pub started_at: String,
    /// Room for new volumes, per profile, as last reported.
    pub profiles: Vec<ProfileCapacity>,
}

/// `GET /v1/cluster/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterNodes {
    /// The node that answered.
    pub this_node: String,
    /// Every node whose lease is alive, by name.
    pub nodes: Vec<ClusterNode>,
}

/// Where a volume of the cluster stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterVolumeState {
    /// Its owner serves it.
    Ready,
    /// Its owner is handing it to [`ClusterVolume::target`]; only the target may create its
    /// copy.
    Moving,
}

/// One volume of the cluster: its name is unique across the cluster, and exactly one node
/// owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterVolume {
    /// The volume's name.
    pub name: String,
    /// The node that owns it: the only one that may mount it.
    pub owner: String,
    /// Its profile.
    pub profile: String,
    /// Its size in bytes, if it has one.
    pub size_bytes: Option<u64>,
    /// The fencing epoch: raised by every change of owner. Mounts record the epoch they were
    /// proven at.
    pub epoch: u64,
    /// Ready, or moving to `target`.
    pub state: ClusterVolumeState,
    /// The node a move hands it to.
    pub target: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Whether its owner's lease is alive (computed by the node that answers, not stored).
    #[serde(default)]
    pub owner_alive: bool,
    /// The nodes that have it mounted now, with their mount counts (computed, not stored).
    #[serde(default)]
    pub mounted_on: Vec<String>,
}

/// `GET /v1/cluster/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterVolumes {
    /// The node that answered.
    pub this_node: String,
    /// Whether that node can prove its lease now: if not, the list is what it last knew.
    pub lease_alive: bool,
    /// The registry's revision the list reflects.
    pub revision: i64,
    /// Every volume, by name.
    pub volumes: Vec<ClusterVolume>,
}

/// The record of a mount, kept under the mounting node's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterMount {
    /// The epoch ownership was proven at.
    pub epoch: u64,
    /// How many mounts the node holds.
    pub mounts: u32,
}

/// What kind of record a [`ClusterEvent`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterEventKind {
    /// A node record ([`ClusterNode`]): a node joined, reported capacity, or its lease ended.
    Node,
    /// A volume record ([`ClusterVolume`]): created, moved, removed.
    Volume,
    /// A mount record ([`ClusterMount`]) of volume `name` by node `node`.
    Mount,
}

/// One change of the registry: a line of `GET /v1/cluster/events` (`application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterEvent {
    /// The registry's revision of the change: resume with `?since=` one more.
    pub revision: i64,
    /// What kind of record changed.
    pub kind: ClusterEventKind,
    /// The node's or the volume's name.
    pub name: String,
    /// For a mount, the node that holds it.
    pub node: Option<String>,
    /// Whether the record was deleted (a node's lease ended, a volume was removed, a mount
    /// released).
    pub deleted: bool,
    /// The record as it is now, unless deleted.
    #[schema(value_type = Option<Object>)]
    pub record: Option<serde_json::Value>,
}
