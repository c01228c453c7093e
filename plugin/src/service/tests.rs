//! The service on a directory backend in a temporary root: failures halfway through remove,
//! mount and unmount, stale mount ids, and the modes of the state root.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dvol_backends::directory::DirectoryBackend;
use dvol_backends::mount_table::is_mount_point;
use dvol_backends::{Backend, BackendKind};

use super::VolumeService;
use crate::config::Config;
use crate::containers::{Action, ContainerEngine, ContainerRef, Containers, EngineFuture};
use crate::error::ServiceError;
use crate::profile::HostBackends;
use crate::volume::{Layout, VolumeState};

/// A mount id as the Docker Engine makes them, of a container that crashed.
const CRASHED: &str = "3f0c1b8e4d7a9c2e5b6f80a1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b";

/// An engine that answers a fixed list of running users, or cannot be reached.
struct Engine(Result<Vec<&'static str>, &'static str>);

impl ContainerEngine for Engine {
    fn running_users<'a>(
        &'a self,
        _driver: &'a str,
        _names: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerRef>> {
        let answer = self
            .0
            .clone()
            .map(|users| {
                users
                    .into_iter()
                    .map(|name| ContainerRef {
                        id: format!("id-{name}"),
                        name: name.to_string(),
                        removed_on_stop: false,
                    })
                    .collect()
            })
            .map_err(str::to_string);
        Box::pin(async move { answer })
    }

    fn act<'a>(&'a self, _container: &'a ContainerRef, _action: Action) -> EngineFuture<'a, ()> {
        panic!("no container is stopped or started here")
    }
}

struct Fixture {
    service: VolumeService,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let service = open(&root);
        Fixture {
            service,
            root,
            _tmp: tmp,
        }
    }

    /// A fixture with the directory volume `db`, or `None` (the test skips, saying `why`)
    /// unless this runs as root.
    fn with_db(why: &str) -> Option<Fixture> {
        if !is_root() {
            eprintln!("skipped: {why}");
            return None;
        }
        let f = Fixture::new();
        f.service.create("db", &BTreeMap::new()).unwrap();
        Some(f)
    }

    /// Opens the service again on the same root, as a restart does.
    fn reopen(&mut self) {
        self.service = open(&self.root);
    }

    fn with_engine(&mut self, engine: Engine) {
        self.service
            .set_containers(Containers::new("dvol", Arc::new(engine)));
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        let id = self.service.get(name).unwrap().id;
        Layout::new(&self.root)
            .backend_dir(BackendKind::Directory)
            .join(id.to_string())
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        self.service.mountpoint(&self.service.get(name).unwrap())
    }

    /// The mount ids the database holds for `name`.
    fn recorded_mounts(&self, name: &str) -> BTreeMap<String, u32> {
        let id = self.service.get(name).unwrap().id;
        let all = self.service.metadata.load().unwrap();
        all.into_iter().find(|v| v.id == id).unwrap().mounts
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for volume in self.service.list() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.service.mountpoint(&volume))
                .status();
        }
    }
}

fn open(root: &Path) -> VolumeService {
    let layout = Layout::new(root);
    let backend: Arc<dyn Backend> =
        Arc::new(DirectoryBackend::open(layout.backend_dir(BackendKind::Directory)).unwrap());
    let host = HostBackends::directory_only(backend, "no loop devices in this test");
    let mut service = VolumeService::open(layout, &Config::builtin(), host).unwrap();
    service.set_containers(Containers::new(
        "dvol",
        Arc::new(Engine(Err("no engine in this test"))),
    ));
    service
}

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A file in `dir` that cannot be deleted until [`chattr`] `-i` frees it.
struct Immutable(PathBuf);

impl Immutable {
    fn plant(dir: &Path) -> Immutable {
        let file = dir.join("pinned");
        std::fs::write(&file, b"cannot be deleted").unwrap();
        assert!(chattr("+i", &file), "chattr +i {}", file.display());
        Immutable(file)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

#[test]
fn a_remove_that_fails_halfway_stays_listed_as_removing_and_can_be_retried() {
    let Some(mut f) = Fixture::with_db("chattr +i needs root") else {
        return;
    };
    let pinned = Immutable::plant(&f.data_dir("db"));

    let e = f.service.remove("db").unwrap_err();
    assert!(matches!(e, ServiceError::RemoveFailed { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.starts_with("volume db could not be removed: remove data directory")
            && message.contains("retry `dvol volume rm db`"),
        "{message}"
    );
    let listed = f.service.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, VolumeState::Removing);
    let problem = listed[0].problem.clone().expect("the reason is kept");
    assert!(problem.contains("Operation not permitted"), "{problem}");

    let again = f.service.create("db", &BTreeMap::new()).unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("volume db is being removed ({problem}); retry `dvol volume rm db`")
    );
    assert_eq!(again.code(), "removing");
    assert!(
        f.service.mount("db", "m1").is_err(),
        "a removing volume is not mounted"
    );

    // A restart tries again, fails again, and still lists it with the new reason.
    f.reopen();
    let listed = f.service.get("db").unwrap();
    assert_eq!(listed.state, VolumeState::Removing);
    assert!(listed.problem.unwrap().contains("Operation not permitted"));

    drop(pinned);
    f.service.remove("db").unwrap();
    assert!(f.service.list().is_empty());
    f.service.create("db", &BTreeMap::new()).unwrap();
}

#[test]
fn a_failed_unmount_record_keeps_the_mount_and_its_id() {
    let Some(f) = Fixture::with_db("bind mounts need root") else {
        return;
    };
    f.service.mount("db", "m1").unwrap();
    let mountpoint = f.mountpoint("db");

    f.service.metadata.refuse_writes(true);
    assert!(f.service.unmount("db", "m1").is_err());
    f.service.metadata.refuse_writes(false);
    assert!(is_mount_point(&mountpoint).unwrap(), "still mounted");
    let expected = BTreeMap::from([("m1".to_string(), 1)]);
    assert_eq!(f.service.get("db").unwrap().mounts, expected);
    assert_eq!(f.recorded_mounts("db"), expected);

    f.service.unmount("db", "m1").unwrap();
    assert!(!is_mount_point(&mountpoint).unwrap());
    assert!(f.recorded_mounts("db").is_empty());
}

#[test]
fn a_failed_mount_record_undoes_the_kernel_mount() {
    let Some(f) = Fixture::with_db("bind mounts need root") else {
        return;
    };
    f.service.metadata.refuse_writes(true);
    assert!(f.service.mount("db", "m1").is_err());
    f.service.metadata.refuse_writes(false);
    assert!(!is_mount_point(&f.mountpoint("db")).unwrap());
    assert!(f.service.get("db").unwrap().mounts.is_empty());
    assert!(f.recorded_mounts("db").is_empty());
}

#[test]
fn stale_mount_ids_are_dropped_only_when_the_engine_lists_no_user() {
    let Some(mut f) = Fixture::with_db("bind mounts need root") else {
        return;
    };
    f.service.mount("db", CRASHED).unwrap();

    // Without an engine to ask, today's behaviour: refused while ids are recorded.
    let e = f.service.remove("db").unwrap_err();
    assert!(matches!(e, ServiceError::InUse { .. }), "{e}");
    // A running container uses it: refused.
    f.with_engine(Engine(Ok(vec!["web"])));
    assert!(matches!(
        f.service.remove("db").unwrap_err(),
        ServiceError::InUse { .. }
    ));
    // Something else holds the data mounted (a container's namespace would): refused.
    let holder = f._tmp.path().join("holder");
    std::fs::create_dir(&holder).unwrap();
    let bound = Command::new("mount")
        .arg("--bind")
        .arg(f.mountpoint("db"))
        .arg(&holder)
        .status()
        .unwrap();
    assert!(bound.success());
    f.with_engine(Engine(Ok(vec![])));
    assert!(matches!(
        f.service.remove("db").unwrap_err(),
        ServiceError::InUse { .. }
    ));
    assert!(Command::new("umount")
        .arg(&holder)
        .status()
        .unwrap()
        .success());

    // An id no engine made (a client speaking the plugin protocol by hand) is kept.
    f.service.mount("db", "by-hand").unwrap();
    assert!(matches!(
        f.service.remove("db").unwrap_err(),
        ServiceError::InUse { mounts: 1, .. }
    ));
    assert_eq!(
        f.recorded_mounts("db"),
        BTreeMap::from([("by-hand".into(), 1)])
    );
    f.service.unmount("db", "by-hand").unwrap();

    // No container, nothing else: the stale id is dropped and the remove goes through.
    f.service.mount("db", CRASHED).unwrap();
    f.service.remove("db").unwrap();
    assert!(f.service.list().is_empty());
}

#[test]
fn stale_mount_ids_are_dropped_at_start() {
    let Some(mut f) = Fixture::with_db("bind mounts need root") else {
        return;
    };
    f.service.mount("db", CRASHED).unwrap();
    f.reopen();
    f.service.drop_all_stale_mounts();
    assert!(f.service.get("db").unwrap().in_use(), "no engine: kept");
    f.with_engine(Engine(Ok(vec![])));
    f.service.drop_all_stale_mounts();
    assert!(!f.service.get("db").unwrap().in_use());
    assert!(f.recorded_mounts("db").is_empty());
    assert!(!is_mount_point(&f.mountpoint("db")).unwrap());
}

#[test]
fn the_root_history_and_database_are_owner_only_even_when_made_open_before() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    drop(open(&root));
    let layout = Layout::new(&root);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&root, 0o711);
    set(&layout.history_dir(), 0o755);
    set(&layout.database(), 0o644);
    drop(open(&root));
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&layout.history_dir()), 0o700);
    assert_eq!(mode(&layout.database()), 0o600);
    assert_eq!(mode(&layout.mounts_dir()), 0o711);
}

#[test]
fn a_reset_with_a_precondition_refuses_a_branch_moved_or_files_changed_since_and_loses_nothing() {
    use super::history::ResetPrecondition;
    use dvol_snapshot::{CommitId, NoProgress};
    let Some(f) = Fixture::with_db("directory volumes need root") else {
        return;
    };
    let data = f.data_dir("db");
    let commit = |message: &str| -> CommitId {
        let done = f
            .service
            .commit("db", message, "test", &NoProgress)
            .unwrap();
        done.commit.id.parse().unwrap()
    };
    std::fs::write(data.join("f"), "one").unwrap();
    let first = commit("one");
    // A local commit lands after a push checked the branch at `first`.
    std::fs::write(data.join("f"), "two").unwrap();
    let second = commit("two");
    let stale = ResetPrecondition {
        branch: "master".into(),
        at: Some(first),
    };
    let refused = f
        .service
        .reset_recorded("db", &first.to_string(), &NoProgress, None, Some(&stale))
        .unwrap_err();
    assert_eq!(refused.code(), "moved_meanwhile", "{refused}");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "two");

    // A write after the check: refused, the write kept.
    std::fs::write(data.join("g"), "uncommitted").unwrap();
    let current = ResetPrecondition {
        branch: "master".into(),
        at: Some(second),
    };
    let refused = f
        .service
        .reset_recorded("db", &first.to_string(), &NoProgress, None, Some(&current))
        .unwrap_err();
    assert_eq!(refused.code(), "uncommitted_changes", "{refused}");
    assert_eq!(
        std::fs::read_to_string(data.join("g")).unwrap(),
        "uncommitted"
    );

    std::fs::remove_file(data.join("g")).unwrap();
    f.service
        .reset_recorded("db", &first.to_string(), &NoProgress, None, Some(&current))
        .unwrap();
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "one");
}

/// A peer that lies or stops short, at the object stream of a push: the receiver keeps the
/// objects before the bad spot (a rerun need not send them) and stores none after it.
/// - An object that does not hash to its id is refused naming it (`bad_object_stream`).
/// - A frame that does not parse is refused as such.
/// - A stream without its end frame is a cut (`object_stream_cut`), to be tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stream_with_a_damaged_object_a_bad_frame_or_no_end_keeps_only_what_came_before() {
    use dvol_api::transfer::{pack, PushOffer, UpdateMode, TRANSFER_PROTOCOL};
    use dvol_snapshot::{CommitInfo, NoProgress, ObjectId, Repository, VolumeKey};

    if !is_root() {
        eprintln!("skipped: a push stream test needs root (volumes are made owned by root)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let service = Arc::new(open(&root.path().join("root")));
    service.create("db", &BTreeMap::new()).unwrap();
    let sender = tempfile::tempdir().unwrap();
    let files = sender.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    for (i, name) in ["a", "b", "sub/c", "sub/d", "e"].iter().enumerate() {
        std::fs::write(files.join(name), format!("file {i} of the sender")).unwrap();
    }
    let history = Repository::open(&sender.path().join("history")).unwrap();
    let tip = history
        .commit(
            &VolumeKey::new_random(),
            &files,
            CommitInfo::now("sent", "tester@a"),
            &NoProgress,
        )
        .unwrap()
        .id;
    // Children before the objects that name them, as a sender streams them.
    let objects: Vec<(ObjectId, Vec<u8>)> = history
        .reachable_objects(tip)
        .map(|id| {
            let id = id.unwrap();
            (id, history.read_raw_object(&id).unwrap())
        })
        .collect();
    assert!(objects.len() >= 7, "{} objects", objects.len());

    let like = service.view(service.get("db").unwrap());
    let stream = |body: Vec<u8>| {
        let service = service.clone();
        let offer = PushOffer {
            protocol: TRANSFER_PROTOCOL,
            sender: uuid::Uuid::new_v4(),
            volume: "incoming".into(),
            branch: "master".into(),
            tip: tip.to_string(),
            like: like.clone(),
            mode: UpdateMode::FastForward,
            checkout: false,
            epoch: None,
        };
        let declared = body.len() as u64;
        async move {
            let answer = service.offer_push(offer).unwrap();
            service
                .receive_objects(answer.session, declared, axum::body::Body::from(body))
                .await
                .unwrap_err()
        }
    };
    let frames = |objects: &[(ObjectId, Vec<u8>)]| {
        let mut out = pack::MAGIC.to_vec();
        for (id, stored) in objects {
            pack::object(&mut out, id.as_bytes(), stored);
        }
        out
    };
    let held = |objects: &[(ObjectId, Vec<u8>)]| -> Vec<bool> {
        objects
            .iter()
            .map(|(id, _)| service.history.has_object(id))
            .collect()
    };

    // The third object does not hash to its id.
    let mut lying = objects.clone();
    let last = lying[2].1.len() - 1;
    lying[2].1[last] ^= 0x55;
    let mut body = frames(&lying);
    pack::end(&mut body, lying.len() as u64, 0);
    let e = stream(body).await;
    assert_eq!(e.code(), "bad_object_stream", "{e}");
    assert!(e.to_string().contains(&objects[2].0.to_string()), "{e}");
    let mut expected = vec![true, true];
    expected.resize(objects.len(), false);
    assert_eq!(
        held(&objects),
        expected,
        "kept: the objects before the bad one only"
    );

    // A frame of a kind no sender writes, after two more good objects.
    let mut body = frames(&objects[2..4]);
    body.extend_from_slice(&[0x42, 4, 0, 0, 0, 1, 2, 3, 4]);
    body.extend_from_slice(&frames(&objects[4..])[pack::MAGIC.len()..]);
    let e = stream(body).await;
    assert_eq!(e.code(), "bad_object_stream", "{e}");
    let mut expected = vec![true; 4];
    expected.resize(objects.len(), false);
    assert_eq!(
        held(&objects),
        expected,
        "kept: the objects before the bad frame only"
    );

    // The rest, but no end frame: a cut, and what arrived is kept.
    let e = stream(frames(&objects[4..])).await;
    assert_eq!(e.code(), "object_stream_cut", "{e}");
    assert_eq!(held(&objects), vec![true; objects.len()]);
    let report = service.history.fsck(&NoProgress).unwrap();
    assert!(report.is_clean(), "{report:?}");
}
