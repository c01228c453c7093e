//! What this host offers: identity, backends and capacity per profile.

use dvol_api::{NodeInfo, ProfileCapacity};

use super::VolumeService;

impl VolumeService {
    /// This host's identity, the backends it runs and the room each profile has.
    pub fn node_info(&self) -> NodeInfo {
        let mut backends: Vec<_> = self.backends.iter().map(|b| b.kind()).collect();
        backends.sort();
        backends.dedup();
        NodeInfo {
            id: self.host_id,
            hostname: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            backends,
            profiles: self
                .profiles
                .iter()
                .map(|p| ProfileCapacity {
                    profile: p.name.to_string(),
                    backend: p.backend,
                    available: p.available,
                    capacity: self
                        .backends
                        .iter()
                        .find(|b| Some(b.kind()) == p.backend && b.location() == p.location)
                        .and_then(|b| b.capacity().ok()),
                })
                .collect(),
            volumes: self.volumes.read().expect("registry lock").len(),
            problems: self.problems(),
        }
    }
}
