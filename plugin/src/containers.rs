//! The containers that use a volume, through the Docker Engine API.
//!
//! History operations that replace a volume's data (checkout, reset) stop exactly the running
//! containers that mount the volume through this plugin, run, and start those containers
//! again, also when the operation fails. A commit can pause them instead, for a consistent
//! point without a restart.

use std::collections::HashMap;
use std::future::Future;

use bollard::query_parameters::{ListContainersOptions, StopContainerOptions};
use bollard::Docker;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Seconds a container gets to stop before the engine kills it.
pub const STOP_TIMEOUT_SECS: i32 = 30;

/// Errors talking to the Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The engine could not be reached.
    #[error("cannot reach the Docker Engine to find the containers using volume {volume}: {message}; is dockerd running?")]
    Unreachable {
        /// The volume.
        volume: String,
        /// Why.
        message: String,
    },
    /// A container could not be stopped, paused or started.
    #[error(
        "volume {volume}: cannot {action} container {container}: {message}; nothing was changed"
    )]
    Action {
        /// The volume.
        volume: String,
        /// "stop", "pause", ...
        action: &'static str,
        /// The container's name or id.
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

/// A container stopped (or paused) for an operation that could not be started (or unpaused)
/// again afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotResumed {
    /// The container's name.
    pub container: String,
    /// Why it could not be started again.
    pub error: String,
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

/// The outcome of an operation run by [`Containers::around`].
#[derive(Debug)]
pub struct Around<T> {
    /// The operation's own outcome.
    pub outcome: T,
    /// The containers that could not be started or unpaused again afterwards.
    pub not_resumed: Vec<NotResumed>,
}

/// How to keep containers out of the way during an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiesce {
    /// Stop them and start them again afterwards.
    Stop,
    /// Pause (freeze) them and unpause afterwards.
    Pause,
}

/// A running container that uses a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// Full id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
}

/// Access to the Docker Engine for one plugin driver name.
#[derive(Debug, Clone)]
pub struct Containers {
    driver: String,
}

impl Containers {
    /// Containers mounting volumes of the driver `driver` (the plugin socket's name, e.g. `dvol`).
    pub fn new(driver: impl Into<String>) -> Self {
        Containers {
            driver: driver.into(),
        }
    }

    async fn engine(&self, volume: &str) -> Result<Docker, ContainerError> {
        let unreachable = |e: bollard::errors::Error| ContainerError::Unreachable {
            volume: volume.to_string(),
            message: e.to_string(),
        };
        Docker::connect_with_local_defaults()
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)
    }

    /// Running containers that mount one of `names` (a volume's name and the aliases the engine
    /// knows it by) through this driver.
    pub async fn running_users(
        &self,
        volume: &str,
        names: &[String],
    ) -> Result<Vec<ContainerRef>, ContainerError> {
        let docker = self.engine(volume).await?;
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
            .map_err(|e| ContainerError::Unreachable {
                volume: volume.to_string(),
                message: e.to_string(),
            })?;
        Ok(list
            .into_iter()
            .filter(|c| {
                c.mounts.iter().flatten().any(|m| {
                    m.driver.as_deref() == Some(self.driver.as_str())
                        && m.name.as_ref().is_some_and(|n| names.contains(n))
                })
            })
            .filter_map(|c| {
                Some(ContainerRef {
                    id: c.id?,
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                })
            })
            .collect())
    }

    async fn act(
        &self,
        docker: &Docker,
        volume: &str,
        how: Quiesce,
        undo: bool,
        container: &ContainerRef,
    ) -> Result<(), ContainerError> {
        let (action, result) = match (how, undo) {
            (Quiesce::Stop, false) => (
                "stop",
                docker
                    .stop_container(
                        &container.id,
                        Some(StopContainerOptions {
                            t: Some(STOP_TIMEOUT_SECS),
                            ..Default::default()
                        }),
                    )
                    .await,
            ),
            (Quiesce::Stop, true) => ("start", docker.start_container(&container.id, None).await),
            (Quiesce::Pause, false) => ("pause", docker.pause_container(&container.id).await),
            (Quiesce::Pause, true) => ("unpause", docker.unpause_container(&container.id).await),
        };
        result.map_err(|e| ContainerError::Action {
            volume: volume.to_string(),
            action,
            container: container.name.clone(),
            message: e.to_string(),
        })
    }

    /// Stops (or pauses) the running users of a volume, runs `operation`, and starts (or
    /// unpauses) them again whatever the operation's outcome; those that cannot be started
    /// again are listed in the answer. If one container cannot be stopped, those already
    /// stopped are started again and the operation does not run.
    pub async fn around<T>(
        &self,
        volume: &str,
        names: &[String],
        how: Quiesce,
        operation: impl Future<Output = T>,
    ) -> Result<Around<T>, ContainerError> {
        let users = self.running_users(volume, names).await?;
        if users.is_empty() {
            return Ok(Around {
                outcome: operation.await,
                not_resumed: Vec::new(),
            });
        }
        let docker = self.engine(volume).await?;
        let mut quiesced = Vec::new();
        for container in &users {
            if let Err(e) = self.act(&docker, volume, how, false, container).await {
                let not_resumed = self.resume(&docker, volume, how, &quiesced).await;
                return Err(if not_resumed.is_empty() {
                    e
                } else {
                    ContainerError::NotResumed {
                        cause: Box::new(e),
                        how,
                        not_resumed,
                    }
                });
            }
            info!(volume, container = %container.name, ?how, "container quiesced");
            quiesced.push(container.clone());
        }
        let outcome = operation.await;
        let not_resumed = self.resume(&docker, volume, how, &quiesced).await;
        Ok(Around {
            outcome,
            not_resumed,
        })
    }

    /// Starts (or unpauses) `containers`; answers those that could not be.
    async fn resume(
        &self,
        docker: &Docker,
        volume: &str,
        how: Quiesce,
        containers: &[ContainerRef],
    ) -> Vec<NotResumed> {
        let mut failed = Vec::new();
        for container in containers {
            match self.act(docker, volume, how, true, container).await {
                Ok(()) => info!(volume, container = %container.name, "container resumed"),
                Err(e) => {
                    warn!(volume, error = %e, "could not resume container");
                    failed.push(NotResumed {
                        container: container.name.clone(),
                        error: match e {
                            ContainerError::Action { message, .. } => message,
                            other => other.to_string(),
                        },
                    });
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_stop_names_the_containers_left_stopped() {
        let e = ContainerError::NotResumed {
            cause: Box::new(ContainerError::Action {
                volume: "db".into(),
                action: "stop",
                container: "web".into(),
                message: "timeout".into(),
            }),
            how: Quiesce::Stop,
            not_resumed: vec![NotResumed {
                container: "worker".into(),
                error: "no such image".into(),
            }],
        };
        assert_eq!(
            e.to_string(),
            "volume db: cannot stop container web: timeout; nothing was changed; \
             container worker could not be started again (no such image); \
             start it with `docker start worker`"
        );
    }
}
