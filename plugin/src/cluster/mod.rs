//! Cluster mode: daemons that share one registry of nodes and volumes in etcd
//! (`dvol daemon --cluster URL`).
//!
//! - Each node holds a lease (time to live [`LEASE_TTL`], renewed every [`KEEPALIVE_EVERY`]);
//!   its node record and its mount records live under it, so a node that dies drops out of
//!   `nodes/` and its mounts vanish within the time to live.
//! - A volume's name is claimed once across the cluster: one transaction creates its record
//!   only if no record of that name exists (`create_revision == 0`); of concurrent creates on
//!   several nodes exactly one wins, and the others see its record.
//! - **One writer.** A node mounts a volume read-write only after both hold: its lease is
//!   provably alive (the send time of the last acknowledged keepalive plus the time to live,
//!   less [`LEASE_MARGIN`], lies ahead on the monotonic clock), and a transaction that writes
//!   its mount record succeeds only if the volume's record is still the one that names this
//!   node as owner (`mod_revision` unchanged). An owner change raises the volume's epoch in one
//!   transaction guarded the same way.
//! - **etcd unreachable.** Lookups (Docker `Get`, `Path`, `List`) answer from what the node
//!   last knew ([`Cluster::known_volume`]), kept current by a watch; running containers keep
//!   their mounts; new mounts, creates, removes and moves are refused with "cluster
//!   unreachable" once the lease cannot be proven. On reconnect the node lists the registry
//!   again, watches from there, and reconciles its own volumes with it
//!   ([`crate::service::VolumeService::reconcile_cluster`]).
//!
//! The calls here block: they run the etcd client on the daemon's runtime from the blocking
//! threads the service's operations run on. The lease and the watch run as tasks of that
//! runtime.

pub mod keys;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dvol_api::{ClusterMount, ClusterNode, ClusterVolume, ClusterVolumeState};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use tracing::{info, warn};

use crate::error::ClusterError;

/// The lease's time to live.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the lease is renewed.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);

/// How long before the lease's end a node stops proving ownership with it.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How long one call to etcd may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait before trying etcd again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a node joins: its name, its address for the other nodes, and what it offers.
#[derive(Debug, Clone)]
pub struct JoinAs {
    /// The etcd endpoints (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// The node record to publish; its `profiles` are refreshed by [`Cluster::report_capacity`].
    pub node: ClusterNode,
}

/// What the node last read of the registry.
#[derive(Debug, Default)]
struct Known {
    /// The registry revision it reflects.
    revision: i64,
    /// Live nodes by name.
    nodes: BTreeMap<String, ClusterNode>,
    /// Volumes by name, with the revision their record was last changed at.
    volumes: BTreeMap<String, (ClusterVolume, i64)>,
    /// Mount records by volume, then node.
    mounts: BTreeMap<String, BTreeMap<String, ClusterMount>>,
    /// Whether the watch is running (the cache is current).
    following: bool,
}

/// The lease, as the keepalive loop last saw it.
#[derive(Debug, Default)]
struct Lease {
    /// The lease id, once granted.
    id: Option<i64>,
    /// When the last keepalive that was acknowledged was sent.
    acked_sent_at: Option<Instant>,
    /// The last failure, for messages.
    problem: Option<String>,
}

/// What runs after each (re)start of the watch; told whether it is the first.
pub type Resync = Box<dyn Fn(bool) + Send + Sync>;

/// A mount record to write: put (guarded by a revision of the volume's record, if not 0) or
/// delete.
#[derive(Debug)]
struct MountWrite {
    name: String,
    write: Option<(ClusterMount, i64)>,
}

/// What a claim of a name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The record is this node's now.
    Ours,
    /// Another record holds the name.
    Taken(ClusterVolume),
}

/// A node's handle on the registry.
pub struct Cluster {
    client: Client,
    runtime: tokio::runtime::Handle,
    endpoints: String,
    node: Mutex<ClusterNode>,
    lease: Mutex<Lease>,
    known: RwLock<Known>,
    /// Mount records this node holds: re-written under a new lease after a lost one.
    mounts: Mutex<BTreeMap<String, ClusterMount>>,
    /// The mount records to write, in order.
    mount_writes: tokio::sync::mpsc::UnboundedSender<MountWrite>,
    /// Called after each (re)start of the watch, to reconcile this node's volumes; told
    /// whether it is the first since the daemon started.
    on_resync: Mutex<Option<Resync>>,
    /// Whether the watch started once already.
    resynced_once: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.endpoints)
            .field("node", &self.name())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to etcd (lazily: a cluster that is down now is reached once it answers) and
    /// starts the lease and the watch on the current runtime.
    pub async fn join(join: JoinAs) -> Result<Arc<Cluster>, ClusterError> {
        let client = connect(&join.endpoints).await?;
        let cluster = Cluster::start(client, join.endpoints.join(","), join.node);
        let watch = cluster.clone();
        tokio::spawn(async move { watch.follow_forever().await });
        Ok(cluster)
    }

    /// Many nodes over one connection, each with its lease and record but no watch (their
    /// lookups know nothing): what a load run uses to stand for a large cluster.
    pub async fn join_many(
        endpoints: &[String],
        nodes: Vec<ClusterNode>,
    ) -> Result<Vec<Arc<Cluster>>, ClusterError> {
        let client = connect(endpoints).await?;
        Ok(nodes
            .into_iter()
            .map(|node| Cluster::start(client.clone(), endpoints.join(","), node))
            .collect())
    }

    /// A node's handle over `client`, its lease held by a task of the current runtime.
    fn start(client: Client, endpoints: String, node: ClusterNode) -> Arc<Cluster> {
        let (mount_writes, queue) = tokio::sync::mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            mount_writes,
            client,
            runtime: tokio::runtime::Handle::current(),
            endpoints,
            node: Mutex::new(node),
            lease: Mutex::new(Lease::default()),
            known: RwLock::new(Known::default()),
            mounts: Mutex::new(BTreeMap::new()),
            on_resync: Mutex::new(None),
            resynced_once: std::sync::atomic::AtomicBool::new(false),
        });
        let lease = cluster.clone();
        tokio::spawn(async move { lease.hold_lease_forever().await });
        let writer = cluster.clone();
        tokio::spawn(async move { writer.write_mount_records(queue).await });
        cluster
    }

    /// This node's name.
    pub fn name(&self) -> String {
        self.node.lock().expect("node lock").name.clone()
    }

    /// The etcd endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Sets what runs after each (re)start of the watch (told whether it is the first since
    /// the daemon started).
    pub fn on_resync(&self, work: Resync) {
        *self.on_resync.lock().expect("resync lock") = Some(work);
    }

    /// Whether the lease is provably alive now: its last acknowledged keepalive was sent
    /// less than the time to live, less the margin, ago.
    pub fn lease_alive(&self) -> bool {
        let lease = self.lease.lock().expect("lease lock");
        lease
            .acked_sent_at
            .is_some_and(|sent| sent.elapsed() + LEASE_MARGIN < LEASE_TTL)
    }

    /// Waits (blocking, at most `patience`) until the lease is provably alive; whether it is.
    pub fn wait_for_lease(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while !self.lease_alive() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The refusal of `what` for `volume` when the lease cannot be proven.
    fn unreachable(&self, what: &'static str, volume: &str, reason: impl ToString) -> ClusterError {
        ClusterError::Unreachable {
            what,
            volume: volume.to_string(),
            endpoints: self.endpoints.clone(),
            reason: reason.to_string(),
        }
    }

    /// Refuses `what` unless the lease is provably alive.
    fn need_lease(&self, what: &'static str, volume: &str) -> Result<i64, ClusterError> {
        let lease = self.lease.lock().expect("lease lock");
        match (lease.id, lease.acked_sent_at) {
            (Some(id), Some(sent)) if sent.elapsed() + LEASE_MARGIN < LEASE_TTL => Ok(id),
            _ => Err(self.unreachable(
                what,
                volume,
                format!(
                    "cannot prove this node's lease{}",
                    lease
                        .problem
                        .as_deref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Runs `work` against etcd from a blocking thread, within the call time-out.
    fn call<T>(
        &self,
        what: &'static str,
        volume: &str,
        work: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        self.runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, work).await })
            .map_err(|_| {
                self.unreachable(
                    what,
                    volume,
                    format!("did not answer within {CALL_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| self.unreachable(what, volume, e))
    }

    /// Reads volume `name`'s record from etcd (a linearizable read), with its revision.
    pub fn volume(
        &self,
        what: &'static str,
        name: &str,
    ) -> Result<Option<(ClusterVolume, i64)>, ClusterError> {
        let mut client = self.client.clone();
        let key = keys::volume(name);
        let answer = self.call(what, name, async move { client.get(key, None).await })?;
        answer
            .kvs()
            .first()
            .map(|kv| {
                Ok((
                    decode::<ClusterVolume>(kv.key(), kv.value())?,
                    kv.mod_revision(),
                ))
            })
            .transpose()
    }

    /// Claims `record.name` for this node: creates its record unless one exists.
    pub fn claim(&self, record: &ClusterVolume) -> Result<Claim, ClusterError> {
        self.need_lease("creating", &record.name)?;
        let key = keys::volume(&record.name);
        let value = encode(record);
        let owned = keys::owned(&record.owner, &record.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key.clone(), value, None),
                TxnOp::put(owned, record.epoch.to_string(), None),
            ])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = self.client.clone();
        let answer = self.call(
            "creating",
            &record.name,
            async move { client.txn(txn).await },
        )?;
        if answer.succeeded() {
            info!(volume = %record.name, epoch = record.epoch, "claimed in the cluster");
            return Ok(Claim::Ours);
        }
        for op in answer.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    return Ok(Claim::Taken(decode(kv.key(), kv.value())?));
                }
            }
        }
        Err(ClusterError::ChangedMeanwhile {
            volume: record.name.clone(),
        })
    }

    /// Changes volume `name`'s record with `change` if it is still the one at `revision`, in
    /// one transaction that also moves its owner index entry.
    fn rewrite(
        &self,
        what: &'static str,
        (record, revision): (ClusterVolume, i64),
        change: impl FnOnce(&mut ClusterVolume),
    ) -> Result<ClusterVolume, ClusterError> {
        self.need_lease(what, &record.name)?;
        let mut new = record.clone();
        change(&mut new);
        let key = keys::volume(&record.name);
        let mut ops = vec![TxnOp::put(key.clone(), encode(&new), None)];
        if new.owner != record.owner {
            ops.push(TxnOp::delete(
                keys::owned(&record.owner, &record.name),
                None,
            ));
        }
        ops.push(TxnOp::put(
            keys::owned(&new.owner, &new.name),
            new.epoch.to_string(),
            None,
        ));
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
            .and_then(ops);
        let mut client = self.client.clone();
        let answer = self.call(what, &record.name, async move { client.txn(txn).await })?;
        if !answer.succeeded() {
            return Err(ClusterError::ChangedMeanwhile {
                volume: record.name,
            });
        }
        Ok(new)
    }

    /// Volume `name`'s record, refusing one another node owns.
    fn owned_record(
        &self,
        what: &'static str,
        name: &str,
    ) -> Result<Option<(ClusterVolume, i64)>, ClusterError> {
        let me = self.name();
        match self.volume(what, name)? {
            Some((record, _)) if record.owner != me => Err(ClusterError::OwnedElsewhere {
                volume: name.to_string(),
                owner: record.owner.clone(),
                epoch: record.epoch,
                how: format!("; {what} it is done there"),
            }),
            found => Ok(found),
        }
    }

    /// Drops volume `name`'s record, which must be this node's (a name the registry does not
    /// hold is dropped already).
    pub fn release(&self, name: &str) -> Result<(), ClusterError> {
        self.need_lease("removing", name)?;
        let Some((record, revision)) = self.owned_record("removing", name)? else {
            return Ok(());
        };
        let key = keys::volume(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::delete(key, None),
                TxnOp::delete(keys::owned(&record.owner, name), None),
                TxnOp::delete(keys::mount(name, &record.owner), None),
            ]);
        let mut client = self.client.clone();
        let answer = self.call("removing", name, async move { client.txn(txn).await })?;
        if !answer.succeeded() {
            return Err(ClusterError::ChangedMeanwhile {
                volume: name.to_string(),
            });
        }
        self.mounts.lock().expect("mounts lock").remove(name);
        info!(volume = %name, "released in the cluster");
        Ok(())
    }

    /// Proves that this node may mount volume `name` read-write now: its lease is alive and
    /// a linearizable read-only transaction finds the volume's record still naming this node
    /// as owner (guarded by the revision this node knows, read again if that is stale).
    /// Returns the epoch. The mount record (`mounts` is how many mounts the node will hold)
    /// is written after, in order with the other mount records, guarded by the same revision:
    /// it tells other nodes the volume is in use, and is not needed to fence.
    pub fn prove_mount(&self, name: &str, mounts: u32) -> Result<u64, ClusterError> {
        self.need_lease("mounting", name)?;
        let me = self.name();
        let known = {
            let known = self.known.read().expect("known lock");
            known.volumes.get(name).cloned()
        };
        let mut found = known.filter(|(record, _)| record.owner == me);
        for attempt in 0..2 {
            let (record, revision) = match found.take() {
                Some(found) => found,
                None => self.volume("mounting", name)?.ok_or_else(|| {
                    ClusterError::ChangedMeanwhile {
                        volume: name.to_string(),
                    }
                })?,
            };
            if record.owner != me {
                return Err(ClusterError::OwnedElsewhere {
                    volume: name.to_string(),
                    owner: record.owner.clone(),
                    epoch: record.epoch,
                    how: format!(
                        "; only its owner mounts it: stop its containers there and run `dvol move {name} {me}` on {}",
                        record.owner
                    ),
                });
            }
            let txn = Txn::new().when([Compare::mod_revision(
                keys::volume(name),
                CompareOp::Equal,
                revision,
            )]);
            let mut client = self.client.clone();
            let answer = self.call("mounting", name, async move { client.txn(txn).await })?;
            if !answer.succeeded() {
                if attempt == 0 {
                    continue;
                }
                return Err(ClusterError::ChangedMeanwhile {
                    volume: name.to_string(),
                });
            }
            let mount = ClusterMount {
                epoch: record.epoch,
                mounts,
            };
            self.mounts
                .lock()
                .expect("mounts lock")
                .insert(name.to_string(), mount);
            self.queue_mount_record(name, Some((mount, revision)));
            return Ok(record.epoch);
        }
        unreachable!("the loop returns")
    }

    /// Records that this node holds `mounts` mounts of volume `name` (none: drops the record),
    /// after the mount records queued before. Best effort: the record dies with the lease.
    pub fn record_unmount(&self, name: &str, mounts: u32) {
        let kept = {
            let mut held = self.mounts.lock().expect("mounts lock");
            if mounts == 0 {
                held.remove(name);
                None
            } else {
                held.get_mut(name).map(|m| {
                    m.mounts = mounts;
                    *m
                })
            }
        };
        self.queue_mount_record(name, kept.map(|m| (m, 0)));
    }

    /// Queues the write of this node's mount record of `name`: `Some((mount, revision))`
    /// puts it (only while the volume's record is at `revision`, if not 0), `None` deletes it.
    fn queue_mount_record(&self, name: &str, write: Option<(ClusterMount, i64)>) {
        let write = MountWrite {
            name: name.to_string(),
            write,
        };
        if self.mount_writes.send(write).is_err() {
            warn!(volume = %name, "the mount record writer stopped; the record ends with the lease");
        }
    }

    /// Writes the queued mount records, in order, for as long as the daemon runs.
    async fn write_mount_records(
        self: Arc<Self>,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<MountWrite>,
    ) {
        while let Some(MountWrite { name, write }) = queue.recv().await {
            let me = self.name();
            let key = keys::mount(&name, &me);
            let lease = self.lease.lock().expect("lease lock").id;
            let mut client = self.client.clone();
            let result = match (write, lease) {
                (Some((mount, revision)), Some(lease)) => {
                    let put = TxnOp::put(
                        key,
                        encode(&mount),
                        Some(PutOptions::new().with_lease(lease)),
                    );
                    let txn = if revision > 0 {
                        Txn::new()
                            .when([Compare::mod_revision(
                                keys::volume(&name),
                                CompareOp::Equal,
                                revision,
                            )])
                            .and_then([put])
                    } else {
                        Txn::new().and_then([put])
                    };
                    within(client.txn(txn)).await.map(drop)
                }
                // Without a lease the record is written when the lease is granted again.
                (Some(_), None) => Ok(()),
                (None, _) => within(client.delete(key, None)).await.map(drop),
            };
            if let Err(e) = result {
                warn!(volume = %name, error = %e, "could not write this node's mount record; it is written again with the next lease");
            }
        }
    }

    /// Changes this node's volume `name` with `change` ([`Cluster::rewrite`]); refused when
    /// another node owns it or its record is gone.
    fn rewrite_owned(
        &self,
        name: &str,
        change: impl FnOnce(&mut ClusterVolume),
    ) -> Result<ClusterVolume, ClusterError> {
        let found =
            self.owned_record("moving", name)?
                .ok_or_else(|| ClusterError::ChangedMeanwhile {
                    volume: name.to_string(),
                })?;
        self.rewrite("moving", found, change)
    }

    /// Starts handing volume `name` to node `target`: its record says `moving` to it, so the
    /// target may create its copy. Returns the record as it now is.
    pub fn begin_move(&self, name: &str, target: &str) -> Result<ClusterVolume, ClusterError> {
        let target = target.to_string();
        self.rewrite_owned(name, |r| {
            r.state = ClusterVolumeState::Moving;
            r.target = Some(target);
        })
    }

    /// Ends a move: the target owns the volume now, at the next epoch.
    pub fn finish_move(&self, name: &str, target: &str) -> Result<ClusterVolume, ClusterError> {
        let target = target.to_string();
        let done = self.rewrite_owned(name, |r| {
            r.owner = target;
            r.epoch += 1;
            r.state = ClusterVolumeState::Ready;
            r.target = None;
        })?;
        self.mounts.lock().expect("mounts lock").remove(name);
        info!(volume = %name, owner = %done.owner, epoch = done.epoch, "ownership handed over");
        Ok(done)
    }

    /// Undoes [`Cluster::begin_move`] after a failed move: ready again, on this node.
    pub fn abort_move(&self, name: &str) -> Result<(), ClusterError> {
        if let Some(found) = self.owned_record("moving", name)? {
            self.rewrite("moving", found, |r| {
                r.state = ClusterVolumeState::Ready;
                r.target = None;
            })?;
        }
        Ok(())
    }

    /// Volume `name` as this node last knew it, without asking etcd.
    pub fn known_volume(&self, name: &str) -> Option<ClusterVolume> {
        let known = self.known.read().expect("known lock");
        known
            .volumes
            .get(name)
            .map(|(record, _)| with_liveness(&known, record.clone()))
    }

    /// Every volume, as this node last knew them.
    pub fn known_volumes(&self) -> dvol_api::ClusterVolumes {
        let known = self.known.read().expect("known lock");
        dvol_api::ClusterVolumes {
            this_node: self.name(),
            lease_alive: self.lease_alive(),
            revision: known.revision,
            volumes: known
                .volumes
                .values()
                .map(|(record, _)| with_liveness(&known, record.clone()))
                .collect(),
        }
    }

    /// Every live node, as this node last knew them.
    pub fn known_nodes(&self) -> dvol_api::ClusterNodes {
        let known = self.known.read().expect("known lock");
        dvol_api::ClusterNodes {
            this_node: self.name(),
            nodes: known.nodes.values().cloned().collect(),
        }
    }

    /// The live node `name`, as this node last knew it.
    pub fn known_node(&self, name: &str) -> Option<ClusterNode> {
        self.known
            .read()
            .expect("known lock")
            .nodes
            .get(name)
            .cloned()
    }

    /// The volumes the registry says this node owns, as last known.
    pub fn known_owned(&self) -> Vec<ClusterVolume> {
        let me = self.name();
        let known = self.known.read().expect("known lock");
        known
            .volumes
            .values()
            .filter(|(r, _)| r.owner == me)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Whether the watch runs (what [`Cluster::known_volume`] says is current).
    pub fn following(&self) -> bool {
        self.known.read().expect("known lock").following
    }

    /// The registry's revision this node last knew.
    pub fn known_revision(&self) -> i64 {
        self.known.read().expect("known lock").revision
    }

    /// A watch of every change of the registry from revision `since` on; refused when etcd
    /// compacted that revision away.
    pub async fn changes_since(&self, since: i64) -> Result<WatchStream, ClusterError> {
        let unreachable = |e: etcd_client::Error| self.unreachable("following changes", "-", e);
        let mut client = self.client.clone();
        // A read at that revision fails if etcd compacted it away (a watch would say so
        // only after it was made).
        if since <= self.known_revision() {
            let read = within(
                client.get(
                    keys::PREFIX,
                    Some(
                        GetOptions::new()
                            .with_revision(since.max(1))
                            .with_count_only(),
                    ),
                ),
            )
            .await;
            if let Err(e) = read {
                if is_compacted(&e) {
                    let compacted =
                        within(client.get(keys::PREFIX, Some(GetOptions::new().with_count_only())))
                            .await
                            .ok()
                            .and_then(|r| r.header().map(|h| h.revision()))
                            .unwrap_or(since);
                    return Err(ClusterError::Compacted { since, compacted });
                }
                return Err(unreachable(e));
            }
        }
        let mut watch = within(
            client.watch(
                keys::PREFIX,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(since.max(1)),
                ),
            ),
        )
        .await
        .map_err(unreachable)?;
        // The first answer says whether the watch was made, or cancelled for a compacted
        // revision.
        let first = within(watch.message()).await.map_err(unreachable)?;
        if let Some(answer) = first {
            if answer.canceled() {
                return Err(ClusterError::Compacted {
                    since,
                    compacted: answer.compact_revision(),
                });
            }
        }
        Ok(watch)
    }

    /// Publishes new capacity figures in the node record.
    pub fn report_capacity(&self, profiles: Vec<dvol_api::ProfileCapacity>) {
        self.node.lock().expect("node lock").profiles = profiles;
        let Some(lease) = self.lease.lock().expect("lease lock").id else {
            return;
        };
        let node = self.node.lock().expect("node lock").clone();
        let mut client = self.client.clone();
        let result = self.call("reporting capacity", "-", async move {
            client
                .put(
                    keys::node(&node.name),
                    encode(&node),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
        });
        if let Err(e) = result {
            warn!(error = %e, "could not publish this node's capacity");
        }
    }

    /// Grants the lease, publishes the node record and this node's mounts under it, and
    /// renews it until it fails; then again, for as long as the daemon runs.
    async fn hold_lease_forever(self: Arc<Self>) {
        loop {
            if let Err(e) = self.hold_lease().await {
                let mut lease = self.lease.lock().expect("lease lock");
                if lease.problem.as_deref() != Some(e.to_string().as_str()) {
                    warn!(endpoints = %self.endpoints, error = %e, "the cluster lease failed; trying again");
                }
                lease.problem = Some(e.to_string());
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    async fn hold_lease(&self) -> Result<(), etcd_client::Error> {
        let mut client = self.client.clone();
        let grant = within(client.lease_grant(LEASE_TTL.as_secs() as i64, None)).await?;
        let id = grant.id();
        let granted_at = Instant::now();
        let node = self.node.lock().expect("node lock").clone();
        within(client.put(
            keys::node(&node.name),
            encode(&node),
            Some(PutOptions::new().with_lease(id)),
        ))
        .await?;
        let mounts: Vec<(String, ClusterMount)> = self
            .mounts
            .lock()
            .expect("mounts lock")
            .iter()
            .map(|(n, m)| (n.clone(), *m))
            .collect();
        for (name, mount) in mounts {
            within(client.put(
                keys::mount(&name, &node.name),
                encode(&mount),
                Some(PutOptions::new().with_lease(id)),
            ))
            .await?;
        }
        {
            let mut lease = self.lease.lock().expect("lease lock");
            lease.id = Some(id);
            lease.acked_sent_at = Some(granted_at);
            lease.problem = None;
        }
        info!(node = %node.name, lease = id, "joined the cluster");
        let (mut keeper, mut stream) = within(client.lease_keep_alive(id)).await?;
        loop {
            tokio::time::sleep(KEEPALIVE_EVERY).await;
            let sent = Instant::now();
            within(keeper.keep_alive()).await?;
            match within(stream.message()).await? {
                Some(answer) if answer.ttl() > 0 => {
                    self.lease.lock().expect("lease lock").acked_sent_at = Some(sent);
                }
                _ => {
                    return Err(etcd_client::Error::LeaseKeepAliveError(
                        "the lease expired".into(),
                    ))
                }
            }
        }
    }

    /// Lists the registry, then follows its changes, for as long as the daemon runs.
    async fn follow_forever(self: Arc<Self>) {
        loop {
            if let Err(e) = self.follow().await {
                warn!(endpoints = %self.endpoints, error = %e, "the cluster watch failed; listing again");
            }
            self.known.write().expect("known lock").following = false;
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    async fn follow(&self) -> Result<(), etcd_client::Error> {
        let mut client = self.client.clone();
        let listed =
            within(client.get(keys::PREFIX, Some(GetOptions::new().with_prefix()))).await?;
        let revision = listed.header().map_or(0, |h| h.revision());
        {
            let mut known = Known {
                revision,
                following: true,
                ..Known::default()
            };
            for kv in listed.kvs() {
                apply(&mut known, kv.key(), Some((kv.value(), kv.mod_revision())));
            }
            *self.known.write().expect("known lock") = known;
        }
        self.resynced();
        let mut watch = within(
            client.watch(
                keys::PREFIX,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            ),
        )
        .await?;
        while let Some(answer) = watch.message().await? {
            if answer.canceled() {
                return Err(etcd_client::Error::WatchError(format!(
                    "cancelled: {} (compacted at {})",
                    answer.cancel_reason(),
                    answer.compact_revision()
                )));
            }
            let mut known = self.known.write().expect("known lock");
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                let value = match event.event_type() {
                    EventType::Put => Some((kv.value(), kv.mod_revision())),
                    EventType::Delete => None,
                };
                apply(&mut known, kv.key(), value);
                known.revision = known.revision.max(kv.mod_revision());
            }
        }
        Err(etcd_client::Error::WatchError("the watch ended".into()))
    }

    fn resynced(&self) {
        let first = !self
            .resynced_once
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(work) = self.on_resync.lock().expect("resync lock").as_ref() {
            work(first);
        }
    }
}

/// The changes one watch answer reports, as the API shows them.
pub fn events_of(answer: &WatchResponse) -> Vec<dvol_api::ClusterEvent> {
    use dvol_api::{ClusterEvent, ClusterEventKind};
    answer
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            let key = std::str::from_utf8(kv.key()).ok()?;
            let (kind, name, node) = match keys::parse(key)? {
                keys::Key::Node(name) => (ClusterEventKind::Node, name, None),
                keys::Key::Volume(name) => (ClusterEventKind::Volume, name, None),
                keys::Key::Mount { name, node } => {
                    (ClusterEventKind::Mount, name, Some(node.to_string()))
                }
                keys::Key::Owned => return None,
            };
            let deleted = event.event_type() == EventType::Delete;
            Some(ClusterEvent {
                revision: kv.mod_revision(),
                kind,
                name: name.to_string(),
                node,
                deleted,
                record: (!deleted)
                    .then(|| serde_json::from_slice(kv.value()).ok())
                    .flatten(),
            })
        })
        .collect()
}

/// An etcd client for `endpoints`.
async fn connect(endpoints: &[String]) -> Result<Client, ClusterError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_timeout(CALL_TIMEOUT)
        .with_keep_alive(KEEPALIVE_EVERY, CALL_TIMEOUT);
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| ClusterError::Unreachable {
            what: "joining",
            volume: "-".into(),
            endpoints: endpoints.join(","),
            reason: e.to_string(),
        })
}

/// `work`, within the call time-out.
async fn within<T>(
    work: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| {
            etcd_client::Error::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("etcd did not answer within {CALL_TIMEOUT:?}"),
            ))
        })?
}

/// Whether etcd refused a read because the revision it asked for was compacted away: gRPC
/// `OUT_OF_RANGE`. (A revision in the future gets the same code, but the callers ask only for
/// revisions they have seen.)
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status) if status.code() == tonic::Code::OutOfRange)
}

/// `record` with what the registry says of its owner and mounts.
fn with_liveness(known: &Known, mut record: ClusterVolume) -> ClusterVolume {
    record.owner_alive = known.nodes.contains_key(&record.owner);
    record.mounted_on = known
        .mounts
        .get(&record.name)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    record
}

/// Applies one key's new value (`None`: deleted) to what is known.
fn apply(known: &mut Known, key: &[u8], value: Option<(&[u8], i64)>) {
    let Ok(text) = std::str::from_utf8(key) else {
        return;
    };
    let Some(parsed) = keys::parse(text) else {
        return;
    };
    match parsed {
        keys::Key::Node(name) => match value.map(|(v, _)| decode::<ClusterNode>(key, v)) {
            Some(Ok(node)) => {
                known.nodes.insert(name.to_string(), node);
            }
            Some(Err(e)) => warn!(error = %e, "skipping a node record"),
            None => {
                known.nodes.remove(name);
            }
        },
        keys::Key::Volume(name) => {
            match value.map(|(v, rev)| (decode::<ClusterVolume>(key, v), rev)) {
                Some((Ok(record), rev)) => {
                    known.volumes.insert(name.to_string(), (record, rev));
                }
                Some((Err(e), _)) => warn!(error = %e, "skipping a volume record"),
                None => {
                    known.volumes.remove(name);
                }
            }
        }
        keys::Key::Mount { name, node } => match value.map(|(v, _)| decode::<ClusterMount>(key, v))
        {
            Some(Ok(mount)) => {
                known
                    .mounts
                    .entry(name.to_string())
                    .or_default()
                    .insert(node.to_string(), mount);
            }
            Some(Err(e)) => warn!(error = %e, "skipping a mount record"),
            None => {
                if let Some(m) = known.mounts.get_mut(name) {
                    m.remove(node);
                    if m.is_empty() {
                        known.mounts.remove(name);
                    }
                }
            }
        },
        keys::Key::Owned => {}
    }
}

/// A record as stored: JSON.
fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    // Records are plain data: serialising them cannot fail.
    serde_json::to_vec(record).expect("a registry record serialises")
}

/// A stored record.
fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|e| ClusterError::BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_revision_is_known_by_its_grpc_code_not_its_text() {
        let status = |s: tonic::Status| etcd_client::Error::GRpcStatus(s);
        assert!(is_compacted(&status(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted"
        ))));
        assert!(!is_compacted(&status(tonic::Status::unavailable(
            "compacted: connection reset"
        ))));
        assert!(!is_compacted(&etcd_client::Error::IoError(
            std::io::Error::other("revision compacted")
        )));
    }
}
