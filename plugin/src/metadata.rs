//! The metadata database: volumes, aliases, active mount ids, the host's identity and the
//! journal of the operations that replace a volume's data, in SQLite under the state root.
//!
//! Every change is one transaction, so a crash leaves either the old or the new record. The
//! schema version lives in SQLite's `user_version`; [`MIGRATIONS`] bring an older database
//! forward at open.

use std::collections::BTreeMap;
use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    r#"
CREATE TABLE journal (
    id              TEXT PRIMARY KEY,
    volume_uuid     TEXT NOT NULL REFERENCES volumes(uuid) ON DELETE CASCADE,
    operation       TEXT NOT NULL CHECK (operation IN ('checkout', 'reset')),
    rev             TEXT NOT NULL,
    new_branch      TEXT,
    target          TEXT,
    branch          TEXT,
    previous_branch TEXT,
    previous_commit TEXT,
    stopped         TEXT NOT NULL,
    phase           TEXT NOT NULL CHECK (phase IN ('stopping', 'writing', 'resuming')),
    started_at      TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE remotes (
    name      TEXT PRIMARY KEY,
    url       TEXT NOT NULL,
    token     TEXT NOT NULL,
    ca_pem    TEXT,
    added_at  TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE moved (
    volume_uuid TEXT PRIMARY KEY REFERENCES volumes(uuid) ON DELETE CASCADE,
    remote      TEXT NOT NULL,
    commit_id   TEXT NOT NULL,
    moved_at    TEXT NOT NULL
);
"#,
];

/// Where a volume was moved (`dvol move`): this host keeps its data read-only, and refuses
/// to mount it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedRecord {
    /// The remote it went to.
    pub remote: String,
    /// Its last commit, which the remote has.
    pub commit: String,
    /// When.
    pub moved_at: DateTime<Utc>,
}

/// Another daemon this one pushes to and clones from, as recorded (with its credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteRecord {
    /// Its name here.
    pub name: String,
    /// `tcp://HOST:PORT`.
    pub url: String,
    /// The bearer token it wants; never logged or answered.
    pub token: String,
    /// The CA that signs its TLS certificate; `None`: plain TCP.
    pub ca_pem: Option<String>,
    /// When it was added.
    pub added_at: DateTime<Utc>,
}

impl std::fmt::Debug for RemoteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRecord")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("tls", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Which operation a [`JournalEntry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOperation {
    /// `checkout REV` (or `checkout -b NAME REV`): HEAD moves to the target.
    Checkout,
    /// `reset --hard REV`: HEAD's branch (or a detached HEAD) moves to the target.
    Reset,
}

impl JournalOperation {
    /// The name stored, and shown in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalOperation::Checkout => "checkout",
            JournalOperation::Reset => "reset",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "checkout" => Some(JournalOperation::Checkout),
            "reset" => Some(JournalOperation::Reset),
            _ => None,
        }
    }
}

/// How far a journaled operation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalPhase {
    /// The volume's containers are being stopped; its data is untouched.
    Stopping,
    /// The volume's data is being replaced: it may hold part of the old and part of the new
    /// files until the operation is finished.
    Writing,
    /// Data and HEAD are done (or the operation failed and said so); what is left is to start
    /// the stopped containers again.
    Resuming,
}

impl JournalPhase {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalPhase::Stopping => "stopping",
            JournalPhase::Writing => "writing",
            JournalPhase::Resuming => "resuming",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stopping" => Some(JournalPhase::Stopping),
            "writing" => Some(JournalPhase::Writing),
            "resuming" => Some(JournalPhase::Resuming),
            _ => None,
        }
    }
}

/// A container an operation stopped, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoppedContainer {
    /// Its full id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// One operation that replaces a volume's data (checkout, reset), recorded before it stops a
/// container or touches a file, so that a crash in its middle is finished at the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The operation's own id.
    pub id: Uuid,
    /// The volume.
    pub volume: Uuid,
    /// Checkout or reset.
    pub operation: JournalOperation,
    /// The revision as the user named it (for the reflog).
    pub rev: String,
    /// The branch a `checkout -b NAME` creates.
    pub new_branch: Option<String>,
    /// The commit the volume's data goes to (hex), once resolved.
    pub target: Option<String>,
    /// The branch HEAD is to be on after a checkout; none for a detached HEAD (and for a
    /// reset, which keeps HEAD's branch).
    pub branch: Option<String>,
    /// HEAD's branch before the operation.
    pub previous_branch: Option<String>,
    /// HEAD's commit before the operation (hex).
    pub previous_commit: Option<String>,
    /// The containers stopped for it, to be started again.
    pub stopped: Vec<StoppedContainer>,
    /// How far it got.
    pub phase: JournalPhase,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Room kept beside the database (`dvol.db.reserve`) so the record of a remove can be written
/// when the state root is full: deleted when a delete finds no room, made again when there is.
pub const RESERVE_BYTES: usize = 1 << 20;

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
    /// The database file's mode could not be set.
    #[error("metadata database {path}: cannot make it readable by its owner only: {source}")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
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

impl MetadataError {
    /// Whether SQLite failed because the filesystem holding the database is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, MetadataError::Sqlite { source, .. } if is_full(source))
    }
}

/// Whether SQLite failed for want of space: `SQLITE_FULL`, or no room to grow the WAL's
/// shared-memory index (`SQLITE_IOERR_SHMSIZE`).
fn is_full(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(e, _) => {
            e.code == rusqlite::ErrorCode::DiskFull
                || e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
        }
        _ => false,
    }
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

/// Makes the database file and its SQLite companions (`-wal`, `-shm`) readable by their owner
/// only, whatever mode an older dvol left them with.
fn restrict_to_owner(path: &Path) -> Result<(), MetadataError> {
    let companion = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    for file in [path.to_path_buf(), companion("-wal"), companion("-shm")] {
        match std::fs::set_permissions(&file, Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != path => {}
            Err(source) => return Err(MetadataError::Mode { path: file, source }),
        }
    }
    Ok(())
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
        restrict_to_owner(path)?;
        const SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";
        if let Err(e) = conn.execute_batch(SETTINGS) {
            // A full filesystem has no room for the shared-memory index (`-shm`) WAL mode
            // needs. In exclusive locking mode SQLite keeps that index in memory, so the
            // database still opens (the daemon holds the root alone; see `root_lock`).
            if !is_full(&e) {
                return Err(sqlite(e));
            }
            drop(conn);
            tracing::warn!(database = %path.display(), error = %e, "no room for the database's shared-memory index; opening it in exclusive locking mode");
            conn = Connection::open(path).map_err(sqlite)?;
            conn.execute_batch(&format!("PRAGMA locking_mode = EXCLUSIVE; {SETTINGS}"))
                .map_err(sqlite)?;
        }
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
        let metadata = Metadata {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        metadata.keep_reserve();
        Ok(metadata)
    }

    /// The file holding [`RESERVE_BYTES`] of room for the journal of a delete.
    fn reserve_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".reserve");
        PathBuf::from(name)
    }

    /// Makes the reserve file if it is missing and there is room; best effort.
    pub fn keep_reserve(&self) {
        let reserve = self.reserve_path();
        if reserve.exists() {
            return;
        }
        let mut partial = reserve.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .and_then(|mut file| {
                file.write_all(&vec![0; RESERVE_BYTES])?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&partial, &reserve));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&partial);
            tracing::info!(reserve = %reserve.display(), error = %e, "no room for the metadata database's reserve yet");
        }
    }

    /// Runs a change that must get through on a full disk (the record of a remove): if it
    /// fails for want of space, the reserve file is deleted to make room and it runs again.
    fn with_reserve<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, MetadataError> {
        match self.with(&mut f) {
            Err(e) if e.is_storage_full() && self.reserve_path().exists() => {
                tracing::warn!(database = %self.path.display(), "the state root is full: using the metadata database's reserve");
                let _ = std::fs::remove_file(self.reserve_path());
                self.with(f)
            }
            other => other,
        }
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

    /// Makes every later write fail (SQLite's `query_only`), as a full or broken disk would.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self, refuse: bool) {
        self.with(|c| c.pragma_update(None, "query_only", refuse))
            .unwrap();
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<usize, MetadataError> {
        self.with(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
    }

    /// This host's stable id, made on first use.
    pub fn host_id(&self) -> Result<Uuid, MetadataError> {
        let fresh = Uuid::new_v4().to_string();
        let stored: String = self.with(|c| {
            let read = |c: &Connection| {
                c.query_row("SELECT value FROM node WHERE key = 'host_id'", [], |row| {
                    row.get(0)
                })
            };
            // Read first: a host that has its id writes nothing (a full disk allows no write).
            match read(c) {
                Err(rusqlite::Error::QueryReturnedNoRows) => {
                    c.execute(
                        "INSERT OR IGNORE INTO node (key, value) VALUES ('host_id', ?1)",
                        [&fresh],
                    )?;
                    read(c)
                }
                other => other,
            }
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
                    problem: None,
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

    /// Forgets a volume, its mounts and aliases. Gets through on a full disk while the
    /// reserve lasts (see [`Metadata::keep_reserve`]).
    pub fn delete(&self, id: Uuid) -> Result<(), MetadataError> {
        self.with_reserve(|c| {
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

    /// Records `entry` in the operation journal, replacing its earlier record; durable when
    /// this returns.
    pub fn put_journal(&self, entry: &JournalEntry) -> Result<(), MetadataError> {
        let stopped = serde_json::to_string(&entry.stopped).expect("containers serialize");
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO journal (id, volume_uuid, operation, rev, new_branch, target, branch, previous_branch, previous_commit, stopped, phase, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    entry.id.to_string(),
                    entry.volume.to_string(),
                    entry.operation.as_str(),
                    entry.rev,
                    entry.new_branch,
                    entry.target,
                    entry.branch,
                    entry.previous_branch,
                    entry.previous_commit,
                    stopped,
                    entry.phase.as_str(),
                    entry.started_at.to_rfc3339(),
                ],
            )
            .map(drop)
        })
    }

    /// Drops an operation from the journal: it is finished.
    pub fn delete_journal(&self, id: Uuid) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute("DELETE FROM journal WHERE id = ?1", [id.to_string()])
                .map(drop)
        })
    }

    /// The operations in the journal, oldest first.
    pub fn journal(&self) -> Result<Vec<JournalEntry>, MetadataError> {
        type Raw = [Option<String>; 12];
        let rows: Vec<Raw> = self.with(|c| {
            c.prepare("SELECT id, volume_uuid, operation, rev, new_branch, target, branch, previous_branch, previous_commit, stopped, phase, started_at FROM journal ORDER BY started_at, id")?
                .query_map([], |r| {
                    let mut raw: Raw = Default::default();
                    for (i, field) in raw.iter_mut().enumerate() {
                        *field = r.get(i)?;
                    }
                    Ok(raw)
                })?
                .collect()
        })?;
        rows.into_iter()
            .map(|[id, volume, operation, rev, new_branch, target, branch, previous_branch, previous_commit, stopped, phase, started_at]| {
                let corrupt = |problem: String| MetadataError::Corrupt {
                    path: self.path.clone(),
                    uuid: volume.clone().unwrap_or_default(),
                    problem: format!("journal entry {}: {problem}", id.as_deref().unwrap_or("?")),
                };
                let uuid = |field: &Option<String>| {
                    field
                        .as_deref()
                        .and_then(|s| s.parse::<Uuid>().ok())
                        .ok_or_else(|| corrupt("bad uuid".into()))
                };
                Ok(JournalEntry {
                    id: uuid(&id)?,
                    volume: uuid(&volume)?,
                    operation: operation
                        .as_deref()
                        .and_then(JournalOperation::parse)
                        .ok_or_else(|| corrupt(format!("unknown operation {operation:?}")))?,
                    rev: rev.unwrap_or_default(),
                    new_branch,
                    target,
                    branch,
                    previous_branch,
                    previous_commit,
                    stopped: serde_json::from_str(stopped.as_deref().unwrap_or("[]"))
                        .map_err(|e| corrupt(format!("stopped containers: {e}")))?,
                    phase: phase
                        .as_deref()
                        .and_then(JournalPhase::parse)
                        .ok_or_else(|| corrupt(format!("unknown phase {phase:?}")))?,
                    started_at: DateTime::parse_from_rfc3339(started_at.as_deref().unwrap_or(""))
                        .map_err(|e| corrupt(e.to_string()))?
                        .with_timezone(&Utc),
                })
            })
            .collect()
    }

    /// Records that volume `id` moved away.
    pub fn mark_moved(&self, id: Uuid, moved: &MovedRecord) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO moved (volume_uuid, remote, commit_id, moved_at) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), moved.remote, moved.commit, moved.moved_at.to_rfc3339()],
            )
            .map(drop)
        })
    }

    /// Forgets that volume `id` moved away (it came back).
    pub fn clear_moved(&self, id: Uuid) -> Result<(), MetadataError> {
        self.with(|c| {
            c.execute("DELETE FROM moved WHERE volume_uuid = ?1", [id.to_string()])
                .map(drop)
        })
    }

    /// Where volume `id` moved, if it did.
    pub fn moved(&self, id: Uuid) -> Result<Option<MovedRecord>, MetadataError> {
        let row: Option<(String, String, String)> = self.with(|c| {
            let mut statement =
                c.prepare("SELECT remote, commit_id, moved_at FROM moved WHERE volume_uuid = ?1")?;
            let mut rows = statement.query([id.to_string()])?;
            match rows.next()? {
                Some(r) => Ok(Some((r.get(0)?, r.get(1)?, r.get(2)?))),
                None => Ok(None),
            }
        })?;
        row.map(|(remote, commit, at)| {
            let moved_at = DateTime::parse_from_rfc3339(&at)
                .map_err(|e| MetadataError::Corrupt {
                    path: self.path.clone(),
                    uuid: id.to_string(),
                    problem: format!("moved_at: {e}"),
                })?
                .with_timezone(&Utc);
            Ok(MovedRecord {
                remote,
                commit,
                moved_at,
            })
        })
        .transpose()
    }

    /// Records a remote; `false` (and nothing changed) if one of that name exists.
    pub fn add_remote(&self, remote: &RemoteRecord) -> Result<bool, MetadataError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO remotes (name, url, token, ca_pem, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    remote.name,
                    remote.url,
                    remote.token,
                    remote.ca_pem,
                    remote.added_at.to_rfc3339()
                ],
            )
            .map(|n| n == 1)
        })
    }

    /// Forgets a remote; `false` if there was none of that name.
    pub fn remove_remote(&self, name: &str) -> Result<bool, MetadataError> {
        self.with(|c| {
            c.execute("DELETE FROM remotes WHERE name = ?1", [name])
                .map(|n| n == 1)
        })
    }

    /// The remotes, by name.
    pub fn remotes(&self) -> Result<Vec<RemoteRecord>, MetadataError> {
        type Raw = (String, String, String, Option<String>, String);
        let rows: Vec<Raw> = self.with(|c| {
            c.prepare("SELECT name, url, token, ca_pem, added_at FROM remotes ORDER BY name")?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
        })?;
        rows.into_iter()
            .map(|(name, url, token, ca_pem, added_at)| {
                let added_at = DateTime::parse_from_rfc3339(&added_at)
                    .map_err(|e| MetadataError::Corrupt {
                        path: self.path.clone(),
                        uuid: String::new(),
                        problem: format!("remote {name}: added_at: {e}"),
                    })?
                    .with_timezone(&Utc);
                Ok(RemoteRecord {
                    name,
                    url,
                    token,
                    ca_pem,
                    added_at,
                })
            })
            .collect()
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
            problem: None,
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
    fn journal_entries_survive_reopen_and_go_with_their_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        let db = volume("db");
        let entry = JournalEntry {
            id: Uuid::new_v4(),
            volume: db.id,
            operation: JournalOperation::Checkout,
            rev: "HEAD^".into(),
            new_branch: Some("fix".into()),
            target: Some("ab".repeat(32)),
            branch: Some("fix".into()),
            previous_branch: Some("master".into()),
            previous_commit: None,
            stopped: vec![StoppedContainer {
                id: "0123456789abcdef".into(),
                name: "web".into(),
            }],
            phase: JournalPhase::Writing,
            started_at: chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        {
            let metadata = Metadata::open(&path).unwrap();
            metadata.insert(&db).unwrap();
            metadata.put_journal(&entry).unwrap();
            let resuming = JournalEntry {
                phase: JournalPhase::Resuming,
                ..entry.clone()
            };
            metadata.put_journal(&resuming).unwrap();
        }
        let metadata = Metadata::open(&path).unwrap();
        let expected = JournalEntry {
            phase: JournalPhase::Resuming,
            ..entry.clone()
        };
        assert_eq!(metadata.journal().unwrap(), [expected]);
        metadata.delete(db.id).unwrap();
        assert_eq!(metadata.journal().unwrap(), []);
    }

    #[test]
    fn a_version_2_database_gets_an_empty_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let metadata = Metadata::open(&path).unwrap();
        assert_eq!(metadata.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(metadata.journal().unwrap(), []);
        assert!(metadata.remotes().unwrap().is_empty());
    }

    #[test]
    fn remotes_survive_reopen_and_a_second_of_one_name_is_not_added() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        let remote = RemoteRecord {
            name: "b".into(),
            url: "tcp://10.77.0.2:7411".into(),
            token: "secret".into(),
            ca_pem: Some("PEM".into()),
            added_at: Utc::now(),
        };
        {
            let metadata = Metadata::open(&path).unwrap();
            assert!(metadata.add_remote(&remote).unwrap());
            let other = RemoteRecord {
                url: "tcp://10.77.0.3:7411".into(),
                ..remote.clone()
            };
            assert!(!metadata.add_remote(&other).unwrap());
            assert!(
                !format!("{remote:?}").contains("secret"),
                "the token is never printed"
            );
        }
        let metadata = Metadata::open(&path).unwrap();
        let kept = metadata.remotes().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].url, remote.url);
        assert_eq!(kept[0].token, "secret");
        assert!(metadata.remove_remote("b").unwrap());
        assert!(!metadata.remove_remote("b").unwrap());
        assert!(metadata.remotes().unwrap().is_empty());
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

    /// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
    struct SmallFs(tempfile::TempDir);

    impl SmallFs {
        fn mount(size: &str) -> SmallFs {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
            SmallFs(dir)
        }

        /// Writes a file until the filesystem has no room left.
        fn fill(&self) {
            let mut file = std::fs::File::create(self.0.path().join("fill")).unwrap();
            let chunk = vec![1u8; 64 << 10];
            while file.write_all(&chunk).is_ok() {}
            for i in 0.. {
                if std::fs::write(self.0.path().join(format!("f{i}")), b"x").is_err() {
                    break;
                }
            }
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn on_a_full_disk_the_database_opens_and_a_delete_gets_through() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let fs = SmallFs::mount("4m");
        let path = fs.0.path().join("dvol.db");
        let (a, b) = (volume("a"), volume("b"));
        {
            let metadata = Metadata::open(&path).unwrap();
            metadata.insert(&a).unwrap();
            metadata.insert(&b).unwrap();
            metadata.host_id().unwrap();
        }
        fs.fill();
        let metadata = Metadata::open(&path).expect("opens on a full disk");
        assert_eq!(metadata.load().unwrap().len(), 2);
        metadata.host_id().unwrap();
        let e = metadata.insert(&volume("c")).unwrap_err();
        assert!(e.is_storage_full(), "{e}");
        metadata
            .delete(a.id)
            .expect("a delete gets through on a full disk");
        assert_eq!(metadata.load().unwrap(), vec![b]);
    }

    #[test]
    fn the_database_is_made_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dvol.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        drop(Metadata::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
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
