//! The containers that use a volume, and keeping them out of the way of an operation.
//!
//! History operations that replace a volume's data (checkout, reset) stop exactly the running
//! containers that mount the volume through this plugin, run, and start those containers
//! again, also when the operation fails. A commit can pause them instead, for a consistent
//! point without a restart.
//!
//! The engine is reached through the narrow [`ContainerEngine`] trait: [`DockerEngine`] speaks
//! the Docker Engine API; tests use a fake.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, StopContainerOptions,
};
use bollard::Docker;
use dvol_api::NotResumed;
use tracing::{info, warn};

use crate::names::VolumeName;

/// How long dvol waits for the engine to say which containers use a volume before it
/// treats the engine as unreachable.
pub const ENGINE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Seconds a container gets to stop before the engine kills it.
pub const STOP_TIMEOUT_SECS: i32 = 30;

/// Errors talking to the container engine.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The engine could not be reached.
    #[error("cannot reach the Docker Engine to find the containers using volume {volume}: {message}; is dockerd running?")]
    Unreachable {
        /// The volume.
        volume: VolumeName,
        /// Why.
        message: String,
    },
    /// A container could not be stopped, paused or started.
    #[error(
        "volume {volume}: cannot {action} container {container}: {message}; nothing was changed"
    )]
    Action {
        /// The volume.
        volume: VolumeName,
        /// What was asked of the container.
        action: Action,
        /// The container's name.
        container: String,
        /// The engine's message.
        message: String,
    },
    /// A container could not be stopped or paused, and some of those already stopped or
    /// paused could not be started or unpaused again.
    #[error("{cause}; {}", not_resumed_text(*how, not_resumed))]
    NotResumed {
        /// Why the operation did not run.
        cause: Box<ContainerError>,
        /// Whether they were stopped or paused.
        how: Quiesce,
        /// The containers left stopped or paused.
        not_resumed: Vec<NotResumed>,
    },
}

/// `container a could not be started again (...); start it with `docker start a``, one clause
/// per container (`unpaused` and `docker unpause` for paused ones).
pub fn not_resumed_text(how: Quiesce, not_resumed: &[NotResumed]) -> String {
    let (done, command) = match how {
        Quiesce::Stop => ("started again", "start"),
        Quiesce::Pause => ("unpaused", "unpause"),
    };
    not_resumed
        .iter()
        .map(|n| {
            format!(
                "container {} could not be {done} ({}); {command} it with `docker {command} {}`",
                n.container, n.error, n.container
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How to keep containers out of the way during an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiesce {
    /// Stop them and start them again afterwards.
    Stop,
    /// Pause (freeze) them and unpause afterwards.
    Pause,
}

impl Quiesce {
    /// What quiescing asks of a container, or (`undo`) what ends it.
    fn action(self, undo: bool) -> Action {
        match (self, undo) {
            (Quiesce::Stop, false) => Action::Stop,
            (Quiesce::Stop, true) => Action::Start,
            (Quiesce::Pause, false) => Action::Pause,
            (Quiesce::Pause, true) => Action::Unpause,
        }
    }
}

/// What can be asked of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop it (the engine kills it after [`STOP_TIMEOUT_SECS`]).
    Stop,
    /// Start it.
    Start,
    /// Freeze its processes.
    Pause,
    /// Thaw its processes.
    Unpause,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
        })
    }
}

/// A running container that uses a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// Full id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Whether the engine deletes the container when it stops (`docker run --rm`, the
    /// engine's `HostConfig.AutoRemove`): stopping it ends it for good.
    pub removed_on_stop: bool,
}

impl ContainerRef {
    /// The id as `docker ps` shows it: its first 12 digits.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The future a [`ContainerEngine`] call returns.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What dvol needs of a container engine. Errors are the engine's messages.
pub trait ContainerEngine: Send + Sync {
    /// Running (or paused) containers that mount one of `names` (a volume's name and the
    /// aliases the engine knows it by) through the volume driver `driver`.
    fn running_users<'a>(
        &'a self,
        driver: &'a str,
        names: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerRef>>;

    /// Asks `action` of one container.
    fn act<'a>(&'a self, container: &'a ContainerRef, action: Action) -> EngineFuture<'a, ()>;
}

/// The Docker Engine, reached through its local socket (`DOCKER_HOST` picks another). The
/// connection is made at first use and kept.
#[derive(Debug, Default)]
pub struct DockerEngine {
    client: tokio::sync::OnceCell<Docker>,
}

impl DockerEngine {
    async fn connect(&self) -> Result<&Docker, String> {
        self.client
            .get_or_try_init(|| async {
                Docker::connect_with_local_defaults()
                    .map_err(|e| e.to_string())?
                    .negotiate_version()
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

impl ContainerEngine for DockerEngine {
    fn running_users<'a>(
        &'a self,
        driver: &'a str,
        names: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerRef>> {
        Box::pin(async move {
            let docker = self.connect().await?;
            let filters = HashMap::from([
                (
                    "status".to_string(),
                    vec!["running".to_string(), "paused".to_string()],
                ),
                ("volume".to_string(), names.to_vec()),
            ]);
            let list = docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .map_err(|e| e.to_string())?;
            let mut users = Vec::new();
            for container in list.into_iter().filter(|c| {
                c.mounts.iter().flatten().any(|m| {
                    m.driver.as_deref() == Some(driver)
                        && m.name.as_ref().is_some_and(|n| names.contains(n))
                })
            }) {
                let Some(id) = container.id else { continue };
                // The list does not say whether the engine deletes the container on stop.
                let inspected = docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| e.to_string())?;
                let removed_on_stop = inspected
                    .host_config
                    .and_then(|h| h.auto_remove)
                    .unwrap_or(false);
                users.push(ContainerRef {
                    id,
                    name: container
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    removed_on_stop,
                });
            }
            Ok(users)
        })
    }

    fn act<'a>(&'a self, container: &'a ContainerRef, action: Action) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let docker = self.connect().await?;
            let id = container.id.as_str();
            match action {
                Action::Stop => {
                    let options = StopContainerOptions {
                        t: Some(STOP_TIMEOUT_SECS),
                        ..Default::default()
                    };
                    docker.stop_container(id, Some(options)).await
                }
                Action::Start => docker.start_container(id, None).await,
                Action::Pause => docker.pause_container(id).await,
                Action::Unpause => docker.unpause_container(id).await,
            }
            .map_err(|e| e.to_string())
        })
    }
}

/// The outcome of an operation run by [`Containers::around`].
#[derive(Debug)]
pub struct Around<T> {
    /// The operation's own outcome.
    pub outcome: T,
    /// The containers that could not be started or unpaused again afterwards.
    pub not_resumed: Vec<NotResumed>,
}

/// The containers of one plugin driver name, on one engine.
pub struct Containers {
    driver: String,
    engine: Arc<dyn ContainerEngine>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

impl Containers {
    /// Containers mounting volumes of the driver `driver` (the plugin socket's name, e.g.
    /// `dvol`) on `engine`.
    pub fn new(driver: impl Into<String>, engine: Arc<dyn ContainerEngine>) -> Self {
        Containers {
            driver: driver.into(),
            engine,
        }
    }

    /// The running (or paused) containers that use a volume known to the engine by `names`,
    /// asked from a blocking context (a thread of its own runs the call, so it works inside
    /// and outside a runtime). `Err` carries the engine's message when it cannot be reached
    /// within [`ENGINE_PATIENCE`].
    pub fn running_users_blocking(&self, names: &[String]) -> Result<Vec<ContainerRef>, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        tokio::time::timeout(
                            ENGINE_PATIENCE,
                            self.engine.running_users(&self.driver, names),
                        )
                        .await
                        .map_err(|_| format!("no answer within {} s", ENGINE_PATIENCE.as_secs()))?
                    })
                })
                .join()
                .map_err(|_| "the thread asking the engine panicked".to_string())?
        })
    }

    /// The running (or paused) containers that use `volume`, known to the engine by `names`.
    pub async fn running_users(
        &self,
        volume: &VolumeName,
        names: &[String],
    ) -> Result<Vec<ContainerRef>, ContainerError> {
        self.engine
            .running_users(&self.driver, names)
            .await
            .map_err(|message| ContainerError::Unreachable {
                volume: volume.clone(),
                message,
            })
    }

    /// Stops (or pauses) the running users of `volume` (known to the engine by `names`), runs
    /// `operation`, and starts (or unpauses) them again whatever the operation's outcome;
    /// those that cannot be started again are listed in the answer. If one container cannot
    /// be stopped, those already stopped are started again and the operation does not run.
    pub async fn around<T>(
        &self,
        volume: &VolumeName,
        names: &[String],
        how: Quiesce,
        operation: impl Future<Output = T>,
    ) -> Result<Around<T>, ContainerError> {
        let users = self.running_users(volume, names).await?;
        self.around_users(volume, &users, how, operation).await
    }

    /// [`Containers::around`] for users already asked for ([`Containers::running_users`]).
    /// A stopped container the engine deletes on stop ([`ContainerRef::removed_on_stop`]) is
    /// gone afterwards: it is not started again, and not listed as left stopped.
    pub async fn around_users<T>(
        &self,
        volume: &VolumeName,
        users: &[ContainerRef],
        how: Quiesce,
        operation: impl Future<Output = T>,
    ) -> Result<Around<T>, ContainerError> {
        let quiesced = self.quiesce(volume, users, how).await?;
        let outcome = operation.await;
        let not_resumed = self.resume(volume, how, &quiesced).await;
        Ok(Around {
            outcome,
            not_resumed,
        })
    }

    /// Stops (or pauses) `users` of `volume` and answers them. If one cannot be, those
    /// already stopped are started again and the error names what failed.
    pub async fn quiesce(
        &self,
        volume: &VolumeName,
        users: &[ContainerRef],
        how: Quiesce,
    ) -> Result<Vec<ContainerRef>, ContainerError> {
        let mut quiesced = Vec::new();
        for container in users {
            let action = how.action(false);
            if let Err(message) = self.engine.act(container, action).await {
                let cause = ContainerError::Action {
                    volume: volume.clone(),
                    action,
                    container: container.name.clone(),
                    message,
                };
                let not_resumed = self.resume(volume, how, &quiesced).await;
                return Err(if not_resumed.is_empty() {
                    cause
                } else {
                    ContainerError::NotResumed {
                        cause: Box::new(cause),
                        how,
                        not_resumed,
                    }
                });
            }
            info!(volume = %volume, container = %container.name, ?how, "container quiesced");
            quiesced.push(container.clone());
        }
        Ok(quiesced)
    }

    /// Starts again `containers`, which were stopped for an operation on `volume` that a
    /// crash interrupted (or that failed); answers those that could not be started.
    pub async fn start_again(
        &self,
        volume: &VolumeName,
        containers: &[ContainerRef],
    ) -> Vec<NotResumed> {
        self.resume(volume, Quiesce::Stop, containers).await
    }

    /// Starts (or unpauses) `containers`; answers those that could not be.
    async fn resume(
        &self,
        volume: &VolumeName,
        how: Quiesce,
        containers: &[ContainerRef],
    ) -> Vec<NotResumed> {
        let mut failed = Vec::new();
        for container in containers {
            if how == Quiesce::Stop && container.removed_on_stop {
                info!(volume = %volume, container = %container.name, "container was run with --rm: the engine removed it when it stopped; not started again");
                continue;
            }
            match self.engine.act(container, how.action(true)).await {
                Ok(()) => info!(volume = %volume, container = %container.name, "container resumed"),
                Err(error) => {
                    warn!(volume = %volume, container = %container.name, %error, "could not resume container");
                    failed.push(NotResumed {
                        container: container.name.clone(),
                        error,
                    });
                }
            }
        }
        failed
    }
}

/// A container engine for unit tests: fixed users of one volume, every action recorded, and
/// the actions it is told to refuse refused.
#[cfg(test)]
pub(crate) mod fake {
    use std::sync::Mutex;

    use super::{Action, ContainerEngine, ContainerRef, EngineFuture};

    /// The fake engine.
    pub(crate) struct FakeEngine {
        volume: &'static str,
        users: Vec<&'static str>,
        removed_on_stop: Vec<&'static str>,
        fail: Vec<(&'static str, Action)>,
        log: Mutex<Vec<String>>,
    }

    impl FakeEngine {
        /// An engine where nothing uses `volume` yet.
        pub(crate) fn new(volume: &'static str) -> Self {
            FakeEngine {
                volume,
                users: Vec::new(),
                removed_on_stop: Vec::new(),
                fail: Vec::new(),
                log: Mutex::new(Vec::new()),
            }
        }

        /// The running containers that mount the volume.
        pub(crate) fn used_by(self, users: &[&'static str]) -> Self {
            FakeEngine {
                users: users.to_vec(),
                ..self
            }
        }

        /// Of the users, those run with `--rm`: the engine deletes them when they stop.
        pub(crate) fn removing_on_stop(self, removed_on_stop: &[&'static str]) -> Self {
            FakeEngine {
                removed_on_stop: removed_on_stop.to_vec(),
                ..self
            }
        }

        /// Refuses these actions of these containers.
        pub(crate) fn refusing(self, fail: &[(&'static str, Action)]) -> Self {
            FakeEngine {
                fail: fail.to_vec(),
                ..self
            }
        }

        /// What was asked of it, in order, with the notes of the test between.
        pub(crate) fn actions(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        /// Records a step of the test among the actions.
        pub(crate) fn note(&self, step: &str) {
            self.log.lock().unwrap().push(step.to_string());
        }
    }

    impl ContainerEngine for FakeEngine {
        fn running_users<'a>(
            &'a self,
            driver: &'a str,
            names: &'a [String],
        ) -> EngineFuture<'a, Vec<ContainerRef>> {
            let mine = driver == "dvol" && names.iter().any(|n| n == self.volume);
            let users = self
                .users
                .iter()
                .filter(|_| mine)
                .map(|name| ContainerRef {
                    id: format!("{name}-0123456789abcdef"),
                    name: name.to_string(),
                    removed_on_stop: self.removed_on_stop.contains(name),
                })
                .collect();
            Box::pin(async move { Ok(users) })
        }

        fn act<'a>(&'a self, container: &'a ContainerRef, action: Action) -> EngineFuture<'a, ()> {
            let name = container.name.as_str();
            self.note(&format!("{action} {name}"));
            let failed = self.fail.contains(&(name, action));
            Box::pin(async move {
                if failed {
                    Err("engine says no".to_string())
                } else {
                    Ok(())
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeEngine;
    use super::*;

    fn containers(engine: FakeEngine) -> (Containers, Arc<FakeEngine>) {
        let engine = Arc::new(engine);
        (Containers::new("dvol", engine.clone()), engine)
    }

    fn db() -> (VolumeName, Vec<String>) {
        (VolumeName::parse("db").unwrap(), vec!["db".to_string()])
    }

    #[tokio::test]
    async fn users_are_stopped_around_the_operation_and_failures_to_start_are_listed() {
        let (containers, engine) = containers(
            FakeEngine::new("db")
                .used_by(&["web", "worker"])
                .refusing(&[("worker", Action::Start)]),
        );
        let (volume, names) = db();
        let around = containers
            .around(&volume, &names, Quiesce::Stop, async {
                engine.note("operation");
                7
            })
            .await
            .unwrap();
        assert_eq!(around.outcome, 7);
        assert_eq!(
            around.not_resumed,
            [NotResumed {
                container: "worker".into(),
                error: "engine says no".into()
            }]
        );
        assert_eq!(
            engine.actions(),
            [
                "stop web",
                "stop worker",
                "operation",
                "start web",
                "start worker"
            ]
        );
    }

    #[tokio::test]
    async fn a_container_that_cannot_be_paused_undoes_the_others_and_skips_the_operation() {
        let (containers, engine) = containers(
            FakeEngine::new("db")
                .used_by(&["web", "worker"])
                .refusing(&[("worker", Action::Pause), ("web", Action::Unpause)]),
        );
        let (volume, names) = db();
        let e = containers
            .around(&volume, &names, Quiesce::Pause, async {
                panic!("the operation must not run")
            })
            .await
            .map(|_: Around<()>| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume db: cannot pause container worker: engine says no; nothing was changed; \
             container web could not be unpaused (engine says no); unpause it with `docker unpause web`"
        );
        assert_eq!(
            engine.actions(),
            ["pause web", "pause worker", "unpause web"]
        );
    }

    #[tokio::test]
    async fn without_users_the_operation_just_runs() {
        let (containers, engine) = containers(FakeEngine::new("db"));
        let (volume, names) = db();
        let around = containers
            .around(&volume, &names, Quiesce::Stop, async { "done" })
            .await
            .unwrap();
        assert_eq!((around.outcome, around.not_resumed.len()), ("done", 0));
        assert!(engine.actions().is_empty());
    }
}
