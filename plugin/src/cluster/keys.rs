//! The key layout of the registry in etcd, all under [`PREFIX`]:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `nodes/<node>` | [`dvol_api::ClusterNode`]: address, version, capacity per profile | the node's |
//! | `vols/<name>` | [`dvol_api::ClusterVolume`]: owner, epoch, profile, size, state | none |
//! | `own/<node>/<name>` | the epoch: the owner index, one prefix per node | none |
//! | `mounts/<name>/<node>` | [`dvol_api::ClusterMount`]: the epoch the mount was proven at | the node's |
//!
//! A volume is keyed by its name, unique across the cluster: each host gives its copy of a
//! volume an id of its own, so the id cannot name it across hosts. `vols/` and `own/` carry
//! no lease, since a dead owner's data cannot be served elsewhere; `nodes/` and `mounts/` die
//! with their node's lease. Commits and refs never go to etcd: its size grows with volumes and
//! nodes, not with history.

/// Every key of the registry starts with this.
pub const PREFIX: &str = "/dvol/v1/";

/// The node records' prefix.
pub fn nodes() -> String {
    format!("{PREFIX}nodes/")
}

/// Node `node`'s record.
pub fn node(node: &str) -> String {
    format!("{PREFIX}nodes/{node}")
}

/// The volume records' prefix.
pub fn volumes() -> String {
    format!("{PREFIX}vols/")
}

/// Volume `name`'s record.
pub fn volume(name: &str) -> String {
    format!("{PREFIX}vols/{name}")
}

/// Node `node`'s entry in the owner index for volume `name`.
pub fn owned(node: &str, name: &str) -> String {
    format!("{PREFIX}own/{node}/{name}")
}

/// Node `node`'s mount record of volume `name`.
pub fn mount(name: &str, node: &str) -> String {
    format!("{PREFIX}mounts/{name}/{node}")
}

/// What a key of the registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// `nodes/<node>`.
    Node(&'a str),
    /// `vols/<name>`.
    Volume(&'a str),
    /// `own/<node>/<name>`.
    Owned,
    /// `mounts/<name>/<node>`.
    Mount {
        /// The volume.
        name: &'a str,
        /// The node.
        node: &'a str,
    },
}

/// Parses a key of the registry; `None` for a key outside the layout.
pub fn parse(key: &str) -> Option<Key<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (kind, rest) = rest.split_once('/')?;
    match kind {
        "nodes" if !rest.contains('/') => Some(Key::Node(rest)),
        "vols" if !rest.contains('/') => Some(Key::Volume(rest)),
        "own" => Some(Key::Owned),
        "mounts" => {
            let (name, node) = rest.split_once('/')?;
            Some(Key::Mount { name, node })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_to_what_made_them() {
        assert_eq!(parse(&node("a")), Some(Key::Node("a")));
        assert_eq!(parse(&volume("orders")), Some(Key::Volume("orders")));
        assert_eq!(parse(&owned("a", "orders")), Some(Key::Owned));
        assert_eq!(
            parse(&mount("orders", "b")),
            Some(Key::Mount {
                name: "orders",
                node: "b"
            })
        );
        assert_eq!(parse("/other/nodes/a"), None);
        assert_eq!(parse(&format!("{PREFIX}vols/a/b")), None);
        assert_eq!(parse(&format!("{PREFIX}what/a")), None);
    }
}
