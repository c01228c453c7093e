//! Keeping containers out of the way of an operation: the running containers that use a
//! volume are stopped (or paused) around it and started (or unpaused) again after, also when
//! the operation fails. The REST API's checkout, reset and `commit --pause` go through here;
//! nothing of it needs HTTP.

use std::sync::Arc;

use dvol_api::{
    CheckoutRequest, CheckoutView, CommitRequest, CommitResult, NotResumed, ResetRequest,
};

use super::{Quiesced, Reporter, VolumeService};
use crate::containers::Quiesce;
use crate::error::ServiceError;

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
    /// (and checked again once they are), unless `request.force`.
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
        let target = name.clone();
        let work = move |service: &VolumeService| {
            let new_branch = request.new_branch.as_deref();
            service.checkout(&target, &request.rev, new_branch, request.force, &*progress)
        };
        let done = self.around_containers(&name, Quiesce::Stop, work).await?;
        Ok(done.into_answer())
    }

    /// `reset --hard` with the volume's running containers stopped meanwhile and started
    /// again after.
    pub async fn reset_with_containers(
        self: &Arc<Self>,
        name: String,
        request: ResetRequest,
        progress: Reporter,
    ) -> Result<CheckoutView, ServiceError> {
        let target = name.clone();
        let work =
            move |service: &VolumeService| service.reset_hard(&target, &request.rev, &*progress);
        let done = self.around_containers(&name, Quiesce::Stop, work).await?;
        Ok(done.into_answer())
    }
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
        let layout = Layout::new(tmp.path().join("root"));
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
        service.create("db", &BTreeMap::new()).unwrap();
        let (_, data) = service.mount("db", "m1").unwrap();
        std::fs::write(data.join("f"), b"one").unwrap();
        service.commit("db", "one", "t", &NoProgress).unwrap();
        std::fs::write(data.join("f"), b"two").unwrap();
        service.commit("db", "two", "t", &NoProgress).unwrap();
        Some((Arc::new(service), tmp))
    }

    fn checkout(rev: &str) -> CheckoutRequest {
        CheckoutRequest {
            rev: rev.into(),
            new_branch: None,
            force: false,
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
