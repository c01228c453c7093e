//! Keeping containers out of the way of an operation: the running containers that use a
//! volume are stopped (or paused) around it and started (or unpaused) again after, also when
//! the operation fails. The REST API's checkout, reset and `commit --pause` go through here;
//! nothing of it needs HTTP.

use std::sync::Arc;

use dvol_api::{
    CheckoutRequest, CheckoutView, CommitRequest, CommitResult, NotResumed, ResetRequest,
};

use super::history::ResetPrecondition;
use super::journal::new_entry;
use super::{Quiesced, Reporter, VolumeService};
use crate::containers::{Around, ContainerRef, Quiesce};
use crate::error::ServiceError;
use crate::metadata::{JournalEntry, JournalOperation};

/// An answer that lists the containers an operation could not start again.
pub trait ListsNotResumed {
    /// Records those containers in the answer.
    fn set_not_resumed(&mut self, not_resumed: Vec<NotResumed>);
}

impl ListsNotResumed for CommitResult {
    fn set_not_resumed(&mut self, not_resumed: Vec<NotResumed>) {
        self.containers_not_resumed = not_resumed;
    }
}

impl ListsNotResumed for CheckoutView {
    fn set_not_resumed(&mut self, not_resumed: Vec<NotResumed>) {
        self.containers_not_resumed = not_resumed;
    }
}

impl<T: ListsNotResumed> Quiesced<T> {
    /// The answer, listing the containers that could not be started again.
    pub fn into_answer(self) -> T {
        let mut value = self.value;
        value.set_not_resumed(self.not_resumed);
        value
    }
}

impl VolumeService {
    /// Runs `work` on a blocking thread with the running containers that use volume `name`
    /// stopped (or paused) around it, when any container has the volume mounted. Containers
    /// that cannot be started again are listed in the answer, or, when the operation failed,
    /// named in its error ([`ServiceError::NotResumed`]). If a container cannot be stopped,
    /// those already stopped are started again and `work` does not run.
    pub async fn around_containers<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        how: Quiesce,
        work: impl FnOnce(&VolumeService) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<Quiesced<T>, ServiceError> {
        let target = name.to_string();
        let (volume, names) = self
            .blocking(move |service| {
                let volume = service.get(&target)?;
                let names = service.docker_names(&volume);
                Ok((volume, names))
            })
            .await?;
        if !volume.in_use() {
            return self.blocking(work).await.map(|value| Quiesced {
                value,
                not_resumed: Vec::new(),
            });
        }
        let around = self
            .containers
            .around(&volume.name, &names, how, self.blocking(work))
            .await?;
        Self::quiesced(around, how)
    }
}

impl VolumeService {
    /// Commits the volume; with `pause`, its running containers are paused meanwhile for a
    /// consistent point (see [`VolumeService::around_containers`]).
    pub async fn commit_with_containers(
        self: &Arc<Self>,
        name: String,
        request: CommitRequest,
        progress: Reporter,
    ) -> Result<CommitResult, ServiceError> {
        let target = name.clone();
        let work = move |service: &VolumeService| {
            let author = request.author.as_deref().unwrap_or("dvol");
            service.commit(&target, &request.message, author, &*progress)
        };
        if !request.pause {
            return self.blocking(work).await;
        }
        let done = self.around_containers(&name, Quiesce::Pause, work).await?;
        Ok(done.into_answer())
    }

    /// Checks out `request.rev` with the volume's running containers stopped meanwhile and
    /// started again after. Uncommitted changes are refused before any container is stopped
    /// (and checked again once they are), unless `request.force`; so is a container the engine
    /// deletes on stop, unless `request.stop_removable`. The operation is journaled from
    /// before the first stop ([`super::journal`]).
    pub async fn checkout_with_containers(
        self: &Arc<Self>,
        name: String,
        request: CheckoutRequest,
        progress: Reporter,
    ) -> Result<CheckoutView, ServiceError> {
        if !request.force {
            let target = name.clone();
            self.blocking(move |service| service.check_committed(&target))
                .await?;
        }
        let plan = Replacement {
            operation: JournalOperation::Checkout,
            rev: request.rev.clone(),
            new_branch: request.new_branch.clone(),
            stop_removable: request.stop_removable,
        };
        let target = name.clone();
        let work = move |service: &VolumeService, entry| {
            let new_branch = request.new_branch.as_deref();
            service.checkout_recorded(
                &target,
                &request.rev,
                new_branch,
                request.force,
                &*progress,
                Some(entry),
            )
        };
        self.replace_around_containers(&name, plan, work).await
    }

    /// `reset --hard` with the volume's running containers stopped meanwhile and started
    /// again after; a container the engine deletes on stop is refused unless
    /// `request.stop_removable`. Journaled like a checkout.
    pub async fn reset_with_containers(
        self: &Arc<Self>,
        name: String,
        request: ResetRequest,
        progress: Reporter,
    ) -> Result<CheckoutView, ServiceError> {
        self.reset_with_containers_if(name, request, None, progress)
            .await
    }

    /// [`VolumeService::reset_with_containers`], done only if `precondition` holds once the
    /// containers are stopped and the volume is locked.
    pub(crate) async fn reset_with_containers_if(
        self: &Arc<Self>,
        name: String,
        request: ResetRequest,
        precondition: Option<ResetPrecondition>,
        progress: Reporter,
    ) -> Result<CheckoutView, ServiceError> {
        let plan = Replacement {
            operation: JournalOperation::Reset,
            rev: request.rev.clone(),
            new_branch: None,
            stop_removable: request.stop_removable,
        };
        let target = name.clone();
        let work = move |service: &VolumeService, entry| {
            service.reset_recorded(
                &target,
                &request.rev,
                &*progress,
                Some(entry),
                precondition.as_ref(),
            )
        };
        self.replace_around_containers(&name, plan, work).await
    }

    /// Runs `work`, which replaces volume `name`'s data, with its running containers stopped
    /// around it, journaled from before the first stop until they run again. A container the
    /// engine would delete on stop is refused unless the plan says to stop it; it is not
    /// started again (it is gone), and not recorded for a restart to start.
    async fn replace_around_containers(
        self: &Arc<Self>,
        name: &str,
        plan: Replacement,
        work: impl FnOnce(&VolumeService, JournalEntry) -> Result<CheckoutView, ServiceError>
            + Send
            + 'static,
    ) -> Result<CheckoutView, ServiceError> {
        let target = name.to_string();
        let (volume, names) = self
            .blocking(move |service| {
                let volume = service.get(&target)?;
                let names = service.docker_names(&volume);
                Ok((volume, names))
            })
            .await?;
        let users = if volume.in_use() {
            self.containers.running_users(&volume.name, &names).await?
        } else {
            Vec::new()
        };
        let removable: Vec<(String, String)> = users
            .iter()
            .filter(|c| c.removed_on_stop)
            .map(|c| (c.name.clone(), c.short_id().to_string()))
            .collect();
        if !removable.is_empty() && !plan.stop_removable {
            return Err(ServiceError::RemovedOnStop {
                volume: volume.name,
                operation: plan.operation.as_str(),
                containers: removable,
            });
        }
        let restartable: Vec<ContainerRef> = users
            .iter()
            .filter(|c| !c.removed_on_stop)
            .cloned()
            .collect();
        let entry = new_entry(
            &volume,
            plan.operation,
            &plan.rev,
            plan.new_branch.as_deref(),
            &restartable,
        );
        let id = entry.id;
        let recorded = volume.clone();
        let to_record = entry.clone();
        self.blocking(move |service| service.record(&recorded, &to_record))
            .await?;
        let around = self
            .containers
            .around_users(
                &volume.name,
                &users,
                Quiesce::Stop,
                self.blocking(move |service| work(service, entry)),
            )
            .await;
        let cleared = volume.clone();
        let _ = self
            .blocking(move |service| {
                service.forget(&cleared, id);
                Ok(())
            })
            .await;
        let done = Self::quiesced(around?, Quiesce::Stop)?;
        Ok(done.into_answer())
    }

    /// The answer of an operation run by [`crate::containers::Containers::around`]: its
    /// value with the containers left stopped, or its error naming them.
    fn quiesced<T>(
        around: Around<Result<T, ServiceError>>,
        how: Quiesce,
    ) -> Result<Quiesced<T>, ServiceError> {
        match around.outcome {
            Ok(value) => Ok(Quiesced {
                value,
                not_resumed: around.not_resumed,
            }),
            Err(e) if around.not_resumed.is_empty() => Err(e),
            Err(e) => Err(ServiceError::NotResumed {
                source: Box::new(e),
                how,
                not_resumed: around.not_resumed,
            }),
        }
    }
}

/// What an operation that replaces a volume's data is, for the journal and the refusal of
/// containers the engine deletes on stop.
struct Replacement {
    operation: JournalOperation,
    rev: String,
    new_branch: Option<String>,
    stop_removable: bool,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dvol_backends::directory::DirectoryBackend;
    use dvol_backends::{Backend, BackendKind};
    use dvol_snapshot::NoProgress;

    use super::*;
    use crate::config::Config;
    use crate::containers::fake::FakeEngine;
    use crate::containers::{Action, Containers};
    use crate::profile::HostBackends;
    use crate::volume::Layout;

    /// A service with one directory volume `db`, mounted as a container would have it, whose
    /// containers live on `engine`.
    fn service(engine: Arc<FakeEngine>) -> Option<(Arc<VolumeService>, tempfile::TempDir)> {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("DVOL_REQUIRE_ALL").as_deref() != Ok("1"),
                "mounting a directory volume needs root (DVOL_REQUIRE_ALL=1)"
            );
            eprintln!("skipped: mounting a directory volume needs root");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let service = open(tmp.path(), engine);
        service.create("db", &BTreeMap::new()).unwrap();
        let (_, data) = service.mount("db", "m1").unwrap();
        std::fs::write(data.join("f"), b"one").unwrap();
        service.commit("db", "one", "t", &NoProgress).unwrap();
        std::fs::write(data.join("f"), b"two").unwrap();
        service.commit("db", "two", "t", &NoProgress).unwrap();
        Some((Arc::new(service), tmp))
    }

    /// Opens (again, as a restart does) the service rooted in `dir`, its containers on
    /// `engine`.
    fn open(dir: &std::path::Path, engine: Arc<FakeEngine>) -> VolumeService {
        let layout = Layout::new(dir.join("root"));
        let directory: Arc<dyn Backend> =
            Arc::new(DirectoryBackend::open(layout.backend_dir(BackendKind::Directory)).unwrap());
        let config = Config::parse(
            "[profiles.bronze]\nbackend = \"directory\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let host = HostBackends::directory_only(directory, "no loop devices in this test");
        let mut service = VolumeService::open(layout, &config, host).unwrap();
        service.set_containers(Containers::new("dvol", engine));
        service
    }

    /// Where the directory backend keeps the volume's files, mounted or not.
    fn data_dir(dir: &std::path::Path, service: &VolumeService) -> std::path::PathBuf {
        Layout::new(dir.join("root"))
            .backend_dir(BackendKind::Directory)
            .join(service.get("db").unwrap().id.to_string())
    }

    /// A progress reporter that reads the operation journal from the database, as a restart
    /// would find it, each time a phase starts.
    struct JournalWatch {
        database: std::path::PathBuf,
        seen: std::sync::Mutex<Vec<Vec<JournalEntry>>>,
    }

    impl dvol_snapshot::Progress for JournalWatch {
        fn start(&self, _phase: dvol_snapshot::Phase, _total: Option<u64>) {
            let metadata = crate::metadata::Metadata::open(&self.database).unwrap();
            self.seen.lock().unwrap().push(metadata.journal().unwrap());
        }
        fn advance(&self, _n: u64) {}
        fn finish(&self) {}
    }

    fn checkout(rev: &str) -> CheckoutRequest {
        CheckoutRequest {
            rev: rev.into(),
            new_branch: None,
            force: false,
            stop_removable: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkout_stops_the_users_of_a_mounted_volume_and_starts_them_again() {
        let engine = Arc::new(FakeEngine::new("db").used_by(&["web"]));
        let Some((service, _tmp)) = service(engine.clone()) else {
            return;
        };
        let view = service
            .checkout_with_containers("db".into(), checkout("HEAD^"), Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(view.files_written, 1);
        assert!(view.containers_not_resumed.is_empty());
        assert_eq!(engine.actions(), ["stop web", "start web"]);
        let data = service.mountpoint(&service.get("db").unwrap());
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"one");
        assert_eq!(
            service.metadata.journal().unwrap(),
            [],
            "a finished checkout clears its journal"
        );
        service.unmount("db", "m1").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_a_checkout_writes_the_journal_names_its_target_and_stopped_containers() {
        let engine = Arc::new(FakeEngine::new("db").used_by(&["web"]));
        let Some((service, _tmp)) = service(engine.clone()) else {
            return;
        };
        let key = dvol_snapshot::VolumeKey(service.get("db").unwrap().id);
        let one = service.history.resolve(&key, "HEAD^").unwrap();
        let two = service.history.resolve(&key, "HEAD").unwrap();
        let watch = Arc::new(JournalWatch {
            database: service.layout.database(),
            seen: Default::default(),
        });
        service
            .checkout_with_containers("db".into(), checkout("HEAD^"), watch.clone())
            .await
            .unwrap();
        let seen = watch.seen.lock().unwrap().clone();
        let during = seen.first().expect("the checkout reported progress");
        assert_eq!(during.len(), 1, "{during:?}");
        let entry = &during[0];
        assert_eq!(
            (entry.operation, entry.phase, entry.rev.as_str()),
            (
                JournalOperation::Checkout,
                crate::metadata::JournalPhase::Writing,
                "HEAD^"
            )
        );
        assert_eq!(entry.target, Some(one.to_string()));
        assert_eq!(entry.branch, None, "HEAD^ detaches HEAD");
        assert_eq!(entry.previous_branch.as_deref(), Some("master"));
        assert_eq!(entry.previous_commit, Some(two.to_string()));
        let stopped: Vec<&str> = entry.stopped.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stopped, ["web"]);
        assert_eq!(service.metadata.journal().unwrap(), []);
        service.unmount("db", "m1").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkout_that_fails_after_writing_clears_its_journal() {
        let engine = Arc::new(FakeEngine::new("db").used_by(&["web"]));
        let Some((service, _tmp)) = service(engine.clone()) else {
            return;
        };
        // `-b master`: the files are written, then the branch cannot be made.
        let existing = CheckoutRequest {
            new_branch: Some("master".into()),
            ..checkout("HEAD^")
        };
        let failed = service
            .checkout_with_containers("db".into(), existing, Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert_eq!(failed.code(), "history_conflict", "{failed}");
        assert_eq!(engine.actions(), ["stop web", "start web"]);
        assert_eq!(service.metadata.journal().unwrap(), []);
        service.unmount("db", "m1").unwrap();
    }

    /// The container an interrupted checkout had stopped.
    fn stopped_web() -> crate::containers::ContainerRef {
        crate::containers::ContainerRef {
            id: "web-0123456789abcdef".into(),
            name: "web".into(),
            removed_on_stop: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_finishes_an_interrupted_checkout_and_starts_its_containers_again() {
        let engine = Arc::new(FakeEngine::new("db").used_by(&["web"]));
        let Some((service, tmp)) = service(engine.clone()) else {
            return;
        };
        let volume = service.get("db").unwrap();
        let key = dvol_snapshot::VolumeKey(volume.id);
        let one = service.history.resolve(&key, "HEAD^").unwrap();
        // The checkout of HEAD^ stopped web (the engine unmounted the volume), recorded that it
        // writes, wrote part of the files and a temporary file, and the daemon died.
        service.unmount("db", "m1").unwrap();
        let web = stopped_web();
        let entry = super::new_entry(&volume, JournalOperation::Checkout, "HEAD^", None, &[web]);
        service.record(&volume, &entry).unwrap();
        let recording = service
            .record_writing(&volume, Some(entry), || unreachable!(), one, None)
            .unwrap();
        drop(recording);
        let data = data_dir(tmp.path(), &service);
        std::fs::write(data.join("f"), b"half").unwrap();
        std::fs::write(data.join(".dvol-tmp-1234"), b"partial").unwrap();
        std::fs::create_dir(data.join("new-dir")).unwrap();
        drop(service);
        assert!(engine.actions().is_empty());

        let service = Arc::new(open(tmp.path(), engine.clone()));
        // Data and HEAD are finished at open, before anything else uses the volume.
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"one");
        let mut names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["f"],
            "the temporary file and the stray directory are gone"
        );
        let head = service.history.head(&key).unwrap();
        assert_eq!((head.branch, head.commit), (None, Some(one)));
        assert_eq!(service.status("db").unwrap(), []);
        let left = service.metadata.journal().unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].phase, crate::metadata::JournalPhase::Resuming);
        assert!(engine.actions().is_empty(), "{:?}", engine.actions());
        // Once the daemon serves, the stopped container is started again and the journal
        // cleared.
        service.resume_interrupted_operations().await;
        assert_eq!(engine.actions(), ["start web"]);
        assert_eq!(service.metadata.journal().unwrap(), []);
        // A further restart finds nothing to do.
        drop(service);
        let service = Arc::new(open(tmp.path(), engine.clone()));
        service.resume_interrupted_operations().await;
        assert_eq!(engine.actions(), ["start web"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_before_the_files_are_touched_only_starts_the_containers_again() {
        let engine = Arc::new(FakeEngine::new("db").used_by(&["web"]));
        let Some((service, tmp)) = service(engine.clone()) else {
            return;
        };
        let volume = service.get("db").unwrap();
        let key = dvol_snapshot::VolumeKey(volume.id);
        let two = service.history.resolve(&key, "HEAD").unwrap();
        service.unmount("db", "m1").unwrap();
        let web = stopped_web();
        // Uncommitted changes a checkout without --force would have refused once the
        // containers were stopped: they must survive.
        let data = data_dir(tmp.path(), &service);
        std::fs::write(data.join("f"), b"uncommitted").unwrap();
        let entry = super::new_entry(&volume, JournalOperation::Checkout, "HEAD^", None, &[web]);
        service.record(&volume, &entry).unwrap();
        drop(service);

        let service = Arc::new(open(tmp.path(), engine.clone()));
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"uncommitted");
        let head = service.history.head(&key).unwrap();
        assert_eq!(
            (head.branch.as_deref(), head.commit),
            (Some("master"), Some(two))
        );
        service.resume_interrupted_operations().await;
        assert_eq!(engine.actions(), ["start web"]);
        assert_eq!(service.metadata.journal().unwrap(), []);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_container_run_with_rm_is_refused_by_name_unless_stop_removable() {
        let engine = Arc::new(
            FakeEngine::new("db")
                .used_by(&["web", "scratch"])
                .removing_on_stop(&["scratch"]),
        );
        let Some((service, _tmp)) = service(engine.clone()) else {
            return;
        };
        let data = service.mountpoint(&service.get("db").unwrap());
        for refused in [
            service
                .checkout_with_containers("db".into(), checkout("HEAD^"), Arc::new(NoProgress))
                .await
                .unwrap_err(),
            service
                .reset_with_containers(
                    "db".into(),
                    ResetRequest {
                        rev: "HEAD^".into(),
                        stop_removable: false,
                    },
                    Arc::new(NoProgress),
                )
                .await
                .unwrap_err(),
        ] {
            assert_eq!(refused.code(), "container_removed_on_stop", "{refused}");
            let message = refused.to_string();
            for part in [
                "volume db",
                "container scratch (id scratch-0123)",
                "--rm",
                "--stop-removable",
            ] {
                assert!(message.contains(part), "{part:?} in {message}");
            }
            assert!(!message.contains("web"), "{message}");
        }
        assert!(
            engine.actions().is_empty(),
            "nothing stopped: {:?}",
            engine.actions()
        );
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"two");
        assert_eq!(service.metadata.journal().unwrap(), []);

        let told = CheckoutRequest {
            stop_removable: true,
            ..checkout("HEAD^")
        };
        let view = service
            .checkout_with_containers("db".into(), told, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"one");
        // The engine deleted scratch when it stopped: it is not started, nor listed as left
        // stopped.
        assert_eq!(engine.actions(), ["stop web", "stop scratch", "start web"]);
        assert!(view.containers_not_resumed.is_empty(), "{view:?}");
        service.unmount("db", "m1").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_container_left_stopped_is_listed_and_uncommitted_changes_stop_nothing() {
        let engine = Arc::new(
            FakeEngine::new("db")
                .used_by(&["web", "worker"])
                .refusing(&[("worker", Action::Start)]),
        );
        let Some((service, _tmp)) = service(engine.clone()) else {
            return;
        };
        let reset = ResetRequest {
            rev: "HEAD^".into(),
            stop_removable: false,
        };
        let view = service
            .reset_with_containers("db".into(), reset, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(
            view.containers_not_resumed,
            [NotResumed {
                container: "worker".into(),
                error: "engine says no".into()
            }]
        );
        // Uncommitted changes are refused before any container is stopped.
        let data = service.mountpoint(&service.get("db").unwrap());
        std::fs::write(data.join("f"), b"uncommitted").unwrap();
        let before = engine.actions().len();
        let refused = service
            .checkout_with_containers("db".into(), checkout("master"), Arc::new(NoProgress))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "uncommitted_changes", "{refused}");
        assert_eq!(engine.actions().len(), before, "{:?}", engine.actions());
        service.unmount("db", "m1").unwrap();
    }
}
