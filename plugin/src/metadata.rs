//! The metadata database: volumes, aliases, active mount ids and the host's identity, in
//! SQLite under the state root.
//!
//! Every change is one transaction, so a crash leaves either the old or the new record. The
//! schema version lives in SQLite's `user_version`; [`MIGRATIONS`] bring an older database
//! forward at open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use dvol_backends::ByteSize;
use rusqlite::{params, Connection};
use uuid::Uuid;

use crate::names::{ProfileName, VolumeName};
use crate::volume::{Volume, VolumeState};

/// Schema steps, applied in order; step `i` brings the schema to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE volumes (
    uuid        TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    profile     TEXT NOT NULL,
    backend     TEXT NOT NULL,
    size_bytes  INTEGER,
    filesystem  TEXT,
    created_at  TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing'))
);
CREATE TABLE mounts (
    volume_uuid TEXT NOT NULL REFERENCES volumes(uuid) ON DELETE CASCADE,
    mount_id    TEXT NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (volume_uuid, mount_id)
);
CREATE TABLE aliases (
    alias       TEXT PRIMARY KEY,
    volume_uuid TEXT NOT NULL REFERENCES volumes(uuid) ON DELETE CASCADE
);
CREATE TABLE node (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE volumes ADD COLUMN location TEXT;
"#,
];

/// Errors from the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// SQLite failed.
    #[error("metadata database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer dvol.
    #[error("metadata database {path} has schema version {found}, newer than this dvol understands ({known}); run a newer dvol")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: usize,
        /// The newest this build knows.
        known: usize,
    },
    /// A row does not make sense.
    #[error("metadata database {path}: corrupt row for volume {uuid}: {problem}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The volume's id as stored.
        uuid: String,
        /// What is wrong.
        problem: String,
    },
}

/// A `volumes` row as stored.
struct Row {
    uuid: String,
    name: String,
    profile: String,
    backend: String,
    size_bytes: Option<i64>,
    filesystem: Option<String>,
    created_at: String,
    state: String,
    location: Option<String>,
}

/// The metadata database.
pub struct Metadata {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Metadata {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let sqlite = |source| MetadataError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(sqlite)?;
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sqlite)?;
        if version > MIGRATIONS.len() {
            return Err(MetadataError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(sqlite)?;
            tx.execute_batch(sql).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", step + 1)
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        Ok(Metadata {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, MetadataError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|source| MetadataError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<usize, MetadataError> {
        self.with(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
    }

    /// This host's stable id, made on first use.
    pub fn host_id(&self) -> Result<Uuid, MetadataError> {
        let fresh = Uuid::new_v4().to_string();
        let stored: String = self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO node (key, value) VALUES ('host_id', ?1)",
                [&fresh],
            )?;
            c.query_row("SELECT value FROM node WHERE key = 'host_id'", [], |row| {
                row.get(0)
            })
        })?;
        stored.parse().map_err(|_| MetadataError::Corrupt {
            path: self.path.clone(),
            uuid: "node".into(),
            problem: format!("host_id {stored:?} is not a UUID"),
        })
    }

    /// Every volume with its active mounts.
    pub fn load(&self) -> Result<Vec<Volume>, MetadataError> {
        let (rows, mounts) = self.with(|c| {
            let rows = c
                .prepare("SELECT uuid, name, profile, backend, size_bytes, filesystem, created_at, state, location FROM volumes ORDER BY name")?
                .query_map([], |r| {
                    Ok(Row {
                        uuid: r.get("uuid")?,
                        name: r.get("name")?,
                        profile: r.get("profile")?,
                        backend: r.get("backend")?,
                        size_bytes: r.get("size_bytes")?,
                        filesystem: r.get("filesystem")?,
                        created_at: r.get("created_at")?,
                        state: r.get("state")?,
                        location: r.get("location")?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<Row>>>()?;
            let mounts = c
                .prepare("SELECT volume_uuid, mount_id, count FROM mounts")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, mounts))
        })?;
        let mut by_volume: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for (uuid, mount_id, count) in mounts {
            by_volume.entry(uuid).or_default().insert(mount_id, count);
        }
        rows.into_iter()
            .map(|row| {
                let corrupt = |problem: String| MetadataError::Corrupt {
                    path: self.path.clone(),
                    uuid: row.uuid.clone(),
                    problem,
                };
                Ok(Volume {
                    id: row.uuid.parse().map_err(|_| corrupt("bad uuid".into()))?,
                    name: VolumeName::parse(&row.name).map_err(|e| corrupt(e.to_string()))?,
                    profile: ProfileName::parse(&row.profile)
                        .map_err(|e| corrupt(e.to_string()))?,
                    backend: serde_json::from_value(serde_json::Value::String(row.backend.clone()))
                        .map_err(|_| corrupt(format!("unknown backend {:?}", row.backend)))?,
                    location: row.location.clone(),
                    size: row
                        .size_bytes
                        .map(|b| ByteSize::from_bytes(b as u64))
                        .transpose()
                        .map_err(|e| corrupt(e.to_string()))?,
                    filesystem: row
                        .filesystem
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(corrupt)?,
                    created_at: DateTime::parse_from_rfc3339(&row.created_at)
                        .map_err(|e| corrupt(e.to_string()))?
                        .with_timezone(&Utc),
                    state: VolumeState::parse(&row.state)
                        .ok_or_else(|| corrupt(format!("unknown state {:?}", row.state)))?,
                    mounts: by_volume.remove(&row.uuid).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Records a new volume.
    pub fn insert(&self, volume: &Volume) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO volumes (uuid, name, profile, backend, size_bytes, filesystem, created_at, state, location)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    volume.id.to_string(),
                    volume.name.as_str(),
                    volume.profile.as_str(),
                    volume.backend.as_str(),
                    volume.size.map(|s| s.bytes() as i64),
                    volume.filesystem.map(|f| f.as_str()),
                    volume.created_at.to_rfc3339(),
                    volume.state.as_str(),
                    volume.location,
                ],
            )
            .map(drop)
        })
    }

    /// Moves a volume to another life-cycle state.
    pub fn set_state(&self, id: Uuid, state: VolumeState) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute(
                "UPDATE volumes SET state = ?2 WHERE uuid = ?1",
                params![id.to_string(), state.as_str()],
            )
            .map(drop)
        })
    }

    /// Records a volume's new size.
    pub fn set_size(&self, id: Uuid, size: ByteSize) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute(
                "UPDATE volumes SET size_bytes = ?2 WHERE uuid = ?1",
                params![id.to_string(), size.bytes() as i64],
            )
            .map(drop)
        })
    }

    /// Forgets a volume, its mounts and aliases.
    pub fn delete(&self, id: Uuid) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute("DELETE FROM volumes WHERE uuid = ?1", [id.to_string()])
                .map(drop)
        })
    }

    /// Replaces a volume's active mounts.
    pub fn set_mounts(
        &self,
        id: Uuid,
        mounts: &BTreeMap<String, u32>,
    ) -> Result<(), MetadataError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM mounts WHERE volume_uuid = ?1",
                [id.to_string()],
            )?;
            for (mount_id, count) in mounts {
                tx.execute(
                    "INSERT INTO mounts (volume_uuid, mount_id, count) VALUES (?1, ?2, ?3)",
                    params![id.to_string(), mount_id, count],
                )?;
            }
            tx.commit()
        })
    }

    /// Remembers a name the Docker Engine knows the volume by (`NAME@PROFILE`).
    pub fn add_alias(&self, alias: &str, id: Uuid) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO aliases (alias, volume_uuid) VALUES (?1, ?2)",
                params![alias, id.to_string()],
            )
            .map(drop)
        })
    }

    /// The aliases recorded for a volume.
    pub fn aliases(&self, id: Uuid) -> Result<Vec<String>, MetadataError> {
        self.with(|c| {
            c.prepare("SELECT alias FROM aliases WHERE volume_uuid = ?1 ORDER BY alias")?
                .query_map([id.to_string()], |r| r.get(0))?
                .collect()
        })
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str) -> Volume {
        Volume {
            id: Uuid::new_v4(),
            name: VolumeName::parse(name).unwrap(),
            profile: ProfileName::parse("bronze").unwrap(),
            backend: dvol_backends::BackendKind::Directory,
            location: None,
            size: Some("1G".parse().unwrap()),
            filesystem: None,
            created_at: chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .with_timezone(&Utc),
            state: VolumeState::Creating,
            mounts: BTreeMap::new(),
        }
    }

    #[test]
    fn records_survive_reopen_and_migrations_run_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        let mut v = volume("orders");
        let host = {
            let metadata = Metadata::open(&path).unwrap();
            metadata.insert(&v).unwrap();
            metadata.set_state(v.id, VolumeState::Ready).unwrap();
            v.mounts.insert("abc".into(), 2);
            metadata.set_mounts(v.id, &v.mounts).unwrap();
            metadata.add_alias("orders@bronze", v.id).unwrap();
            metadata.host_id().unwrap()
        };
        let metadata = Metadata::open(&path).unwrap();
        assert_eq!(metadata.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(metadata.host_id().unwrap(), host);
        v.state = VolumeState::Ready;
        assert_eq!(metadata.load().unwrap(), vec![v.clone()]);
        assert_eq!(metadata.aliases(v.id).unwrap(), ["orders@bronze"]);
        metadata.delete(v.id).unwrap();
        assert!(metadata.load().unwrap().is_empty());
        assert!(metadata.aliases(v.id).unwrap().is_empty());
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO volumes VALUES ('7d0e4a8e-3c57-4c43-9d35-7c1f3a4e2b10', 'old', 'bronze', 'directory', NULL, NULL, '2026-01-02T03:04:05+00:00', 'ready')",
                [],
            )
            .unwrap();
        }
        let metadata = Metadata::open(&path).unwrap();
        assert_eq!(metadata.schema_version().unwrap(), MIGRATIONS.len());
        let volumes = metadata.load().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name.as_str(), "old");
        assert_eq!(volumes[0].location, None);
    }

    #[test]
    fn names_are_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let metadata = Metadata::open(&tmp.path().join("dvol.db")).unwrap();
        metadata.insert(&volume("a")).unwrap();
        assert!(metadata.insert(&volume("a")).is_err());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Metadata::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
