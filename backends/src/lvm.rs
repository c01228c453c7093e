//! The LVM thin backend: a thin logical volume per volume in a profile's thin pool.
//!
//! A volume `id` is the thin LV `dvol-<id as 32 hex digits>` in `VG/POOL`, tagged `dvol` and
//! `dvol_<hex>`. The tags let any later daemon find its own LVs again and leave everything else
//! in the pool alone: LVs without the `dvol` tag are never modified or removed.
//!
//! Creation is crash-safe: the LV is made as `dvol-<hex>-new`, formatted, and only then renamed
//! to its final name. An LV with the final name therefore always holds a filesystem; a leftover
//! `-new` LV (a crash between `lvcreate` and the rename) is removed and made again by the next
//! `create`, and removed by `remove`.
//!
//! A read point (for a commit while containers keep writing) is a thin snapshot of the volume's
//! LV named `dvol-<hex>-rp`, tagged `dvol`, `dvol_<hex>` and `dvol_read_point`, mounted
//! read-only on the caller's scratch directory. `lvcreate` suspends the origin for the
//! snapshot, which freezes a mounted filesystem, so the snapshot is consistent. It is never
//! listed as a volume; a leftover one (a crash during a commit) is reported as such and removed
//! by the next `release_read_point`, `read_point` or `remove` of its volume.
//!
//! Every question about the pool is answered from `lvm lvs`/`lvm vgs` JSON reports
//! (`--reportformat json`), parsed into typed rows, never by scraping text columns.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::command::{CommandError, Tool};
use crate::filesystem::{minimum_size, FilesystemTools};
use crate::mount::{self, mount_snapshot, WhenBusy};
use crate::mount_table::{is_mount_point, mount_points_of_device};
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, Effect, Filesystem, ReadPoint,
    VolumeSpec,
};

/// The tag on every LV dvol makes.
pub const DVOL_TAG: &str = "dvol";

/// The extra tag on the thin snapshot behind a read point.
pub const READ_POINT_TAG: &str = "dvol_read_point";

/// Pool data or metadata usage, in percent, above which no new volume is made.
pub const MAX_POOL_USAGE_PERCENT: f64 = 95.0;

/// The filesystem used when a spec names none.
pub const DEFAULT_FILESYSTEM: Filesystem = Filesystem::Ext4;

const LV_FIELDS: &str =
    "lv_name,vg_name,lv_attr,lv_size,data_percent,metadata_percent,pool_lv,lv_tags";
const VG_FIELDS: &str = "vg_name,vg_size,vg_free";
const NAME_PREFIX: &str = "dvol-";
const INCOMPLETE_SUFFIX: &str = "-new";
const READ_POINT_SUFFIX: &str = "-rp";

/// The LV name of volume `id`: `dvol-<32 hex digits>`.
pub fn lv_name(id: Uuid) -> String {
    format!("{NAME_PREFIX}{}", id.simple())
}

/// The LV name of volume `id` while it is being made, before it has a filesystem.
pub fn incomplete_lv_name(id: Uuid) -> String {
    format!("{}{INCOMPLETE_SUFFIX}", lv_name(id))
}

/// The LV name of the thin snapshot behind volume `id`'s read point: `dvol-<hex>-rp`.
pub fn read_point_lv_name(id: Uuid) -> String {
    format!("{}{READ_POINT_SUFFIX}", lv_name(id))
}

/// The tag naming volume `id` on its LV: `dvol_<32 hex digits>`.
pub fn id_tag(id: Uuid) -> String {
    format!("{DVOL_TAG}_{}", id.simple())
}

/// What an LV name says about the volume it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// `dvol-<hex>`: a finished volume.
    Complete(Uuid),
    /// `dvol-<hex>-new`: a volume whose creation did not finish.
    Incomplete(Uuid),
    /// `dvol-<hex>-rp`: the snapshot behind a read point of a volume.
    ReadPoint(Uuid),
}

fn parse_name(name: &str) -> Option<NameKind> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    type Kind = fn(Uuid) -> NameKind;
    let (hex, kind): (&str, Kind) = if let Some(hex) = rest.strip_suffix(INCOMPLETE_SUFFIX) {
        (hex, NameKind::Incomplete)
    } else if let Some(hex) = rest.strip_suffix(READ_POINT_SUFFIX) {
        (hex, NameKind::ReadPoint)
    } else {
        (rest, NameKind::Complete)
    };
    // Only the simple form (32 lowercase hex digits) that `lv_name` writes.
    if hex.len() != 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let id = Uuid::parse_str(hex).ok()?;
    Some(kind(id))
}

/// A logical volume as `lvm lvs --reportformat json --units b --nosuffix` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogicalVolume {
    /// The LV's name within its volume group.
    pub lv_name: String,
    /// Its volume group.
    pub vg_name: String,
    /// The attribute string (`twi-aotz--` for an active thin pool, `Vwi-a-tz--` for a thin LV).
    pub lv_attr: String,
    /// Its size in bytes (the virtual size for a thin LV).
    #[serde(deserialize_with = "bytes_field")]
    pub lv_size: u64,
    /// Percent of the data space used (pools and thin LVs), if the report has it.
    #[serde(default, deserialize_with = "percent_field")]
    pub data_percent: Option<f64>,
    /// Percent of the metadata space used (pools), if the report has it.
    #[serde(default, deserialize_with = "percent_field")]
    pub metadata_percent: Option<f64>,
    /// The thin pool a thin LV lives in; empty for other LVs.
    #[serde(default)]
    pub pool_lv: String,
    /// The LV's tags.
    #[serde(default, deserialize_with = "tags_field")]
    pub lv_tags: Vec<String>,
}

impl LogicalVolume {
    /// Whether this LV is a thin pool (`lv_attr` starts with `t`).
    pub fn is_thin_pool(&self) -> bool {
        self.lv_attr.starts_with('t')
    }

    /// Whether the LV is active (fifth `lv_attr` character `a`).
    pub fn is_active(&self) -> bool {
        self.lv_attr.chars().nth(4) == Some('a')
    }

    /// Whether the LV carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.lv_tags.iter().any(|t| t == tag)
    }

    /// The volume a dvol-made LV holds: its name and its id tag must agree (and a read point
    /// must carry the read point tag).
    fn dvol_name(&self) -> Option<NameKind> {
        if !self.has_tag(DVOL_TAG) {
            return None;
        }
        let kind = parse_name(&self.lv_name)?;
        let (NameKind::Complete(id) | NameKind::Incomplete(id) | NameKind::ReadPoint(id)) = kind;
        if matches!(kind, NameKind::ReadPoint(_)) && !self.has_tag(READ_POINT_TAG) {
            return None;
        }
        self.has_tag(&id_tag(id)).then_some(kind)
    }
}

/// A volume group as `lvm vgs --reportformat json --units b --nosuffix` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VolumeGroup {
    /// The VG's name.
    pub vg_name: String,
    /// Its size in bytes.
    #[serde(default, deserialize_with = "bytes_field")]
    pub vg_size: u64,
    /// Unallocated bytes.
    #[serde(default, deserialize_with = "bytes_field")]
    pub vg_free: u64,
}

#[derive(Deserialize)]
struct LvsReport {
    report: Vec<LvsSection>,
}

#[derive(Deserialize)]
struct LvsSection {
    #[serde(default)]
    lv: Vec<LogicalVolume>,
}

#[derive(Deserialize)]
struct VgsReport {
    report: Vec<VgsSection>,
}

#[derive(Deserialize)]
struct VgsSection {
    #[serde(default)]
    vg: Vec<VolumeGroup>,
}

/// A report value: LVM's `json` format writes every value as a string, `json_std` writes
/// numbers as numbers and missing values as null.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Text(String),
    Number(f64),
    Null,
}

fn bytes_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawValue::deserialize(d)? {
        RawValue::Text(s) if s.trim().is_empty() => Ok(0),
        RawValue::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a byte count: {s:?}"))),
        RawValue::Number(n) if n >= 0.0 => Ok(n as u64),
        RawValue::Number(n) => Err(serde::de::Error::custom(format!("negative size {n}"))),
        RawValue::Null => Ok(0),
    }
}

fn percent_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match RawValue::deserialize(d)? {
        RawValue::Text(s) if s.trim().is_empty() => Ok(None),
        RawValue::Text(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("not a percentage: {s:?}"))),
        RawValue::Number(n) => Ok(Some(n)),
        RawValue::Null => Ok(None),
    }
}

fn tags_field<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        Text(String),
        List(Vec<String>),
        Null,
    }
    Ok(match Tags::deserialize(d)? {
        Tags::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        Tags::List(list) => list,
        Tags::Null => Vec::new(),
    })
}

fn parse_lvs(json: &str) -> Result<Vec<LogicalVolume>, serde_json::Error> {
    let report: LvsReport = serde_json::from_str(json)?;
    Ok(report.report.into_iter().flat_map(|s| s.lv).collect())
}

fn parse_vgs(json: &str) -> Result<Vec<VolumeGroup>, serde_json::Error> {
    let report: VgsReport = serde_json::from_str(json)?;
    Ok(report.report.into_iter().flat_map(|s| s.vg).collect())
}

/// Whether `name` is a valid VG or LV name that cannot be mistaken for an option.
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}

/// Formats a byte count for messages.
fn human(bytes: u64) -> String {
    match ByteSize::from_bytes(bytes) {
        Ok(size) => size.to_string(),
        Err(_) => format!("{bytes}B"),
    }
}

/// The state of a thin pool that decides whether it can take another volume.
#[derive(Debug, Clone, PartialEq)]
struct PoolUsage {
    /// `VG/POOL`, for messages.
    location: String,
    /// The pool's data size in bytes.
    size: u64,
    /// Percent of the pool's data space in use.
    data_percent: f64,
    /// Percent of the pool's metadata space in use.
    metadata_percent: f64,
    /// Sum of the virtual sizes of the thin LVs in the pool.
    provisioned: u64,
}

impl PoolUsage {
    /// The pool row and the thin LVs of `pool`, from one `lvs` report. LVs named in `exclude`
    /// are left out of `provisioned` (a volume being checked again must not count twice), and
    /// so are read point snapshots: they share their origin's blocks and live for one commit.
    fn from_report(
        lvs: &[LogicalVolume],
        vg: &str,
        pool: &str,
        exclude: &[String],
    ) -> Option<Self> {
        let row = lvs
            .iter()
            .find(|lv| lv.lv_name == pool && lv.is_thin_pool())?;
        let provisioned = lvs
            .iter()
            .filter(|lv| lv.pool_lv == pool && !exclude.contains(&lv.lv_name))
            .filter(|lv| !matches!(lv.dvol_name(), Some(NameKind::ReadPoint(_))))
            .map(|lv| lv.lv_size)
            .sum();
        Some(PoolUsage {
            location: format!("{vg}/{pool}"),
            size: row.lv_size,
            data_percent: row.data_percent.unwrap_or(0.0),
            metadata_percent: row.metadata_percent.unwrap_or(0.0),
            provisioned,
        })
    }

    /// Space not yet written in the pool, in bytes.
    fn free(&self) -> u64 {
        let used = (self.data_percent / 100.0).clamp(0.0, 1.0);
        (self.size as f64 * (1.0 - used)) as u64
    }

    /// Refuses `requested` more virtual bytes when the pool is nearly full or the virtual sizes
    /// would exceed `max_overprovision` times the pool size.
    fn check_room(&self, requested: u64, max_overprovision: f64) -> Result<(), String> {
        for (what, percent) in [
            ("data", self.data_percent),
            ("metadata", self.metadata_percent),
        ] {
            if percent > MAX_POOL_USAGE_PERCENT {
                return Err(format!(
                    "thin pool {} is {percent:.1}% full ({what}), above the {MAX_POOL_USAGE_PERCENT:.0}% \
                     limit for new volumes; extend the pool (lvextend) or remove volumes",
                    self.location
                ));
            }
        }
        let limit = (self.size as f64 * max_overprovision) as u64;
        let total = self.provisioned.saturating_add(requested);
        if total > limit {
            return Err(format!(
                "thin pool {} cannot take {} more: {} already provisioned + {} requested = {} \
                 exceeds {max_overprovision}x the pool size of {} ({} allowed); extend the pool, \
                 remove volumes or raise the profile's overprovision ratio",
                self.location,
                human(requested),
                human(self.provisioned),
                human(requested),
                human(total),
                human(self.size),
                human(limit),
            ));
        }
        Ok(())
    }
}

/// Why an LV in the pool is not one of the daemon's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayKind {
    /// Not made by dvol (no `dvol` tag, or a name and tag dvol never writes).
    Foreign,
    /// Made by dvol for a volume the caller does not know.
    Orphan(Uuid),
    /// Made by dvol, but creation stopped before the filesystem was made and the LV renamed.
    Incomplete(Uuid),
    /// The snapshot behind a read point of a volume, left by a commit that did not finish.
    ReadPoint(Uuid),
}

/// An LV in the pool that is not one of the daemon's volumes. Reported, never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayVolume {
    /// `VG/LV`.
    pub name: String,
    /// Why it is reported.
    pub kind: StrayKind,
}

impl fmt::Display for StrayVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StrayKind::Foreign => write!(f, "{}: not made by dvol; left alone", self.name),
            StrayKind::Orphan(id) => write!(
                f,
                "{}: made by dvol for volume {id}, which is not known; left alone (lvremove it if it is garbage)",
                self.name
            ),
            StrayKind::Incomplete(id) => write!(
                f,
                "{}: unfinished creation of volume {id}; creating or removing the volume cleans it up",
                self.name
            ),
            StrayKind::ReadPoint(id) => write!(
                f,
                "{}: read point (thin snapshot) of volume {id}, not a volume; the daemon removes \
                 it when it releases read points at start, or lvremove it",
                self.name
            ),
        }
    }
}

/// Volumes as thin LVs in one thin pool.
#[derive(Debug, Clone)]
pub struct LvmBackend {
    lvm: Tool,
    filesystems: FilesystemTools,
    e2fsck: Result<Tool, String>,
    resize2fs: Result<Tool, String>,
    volume_group: String,
    thin_pool: String,
    max_overprovision: f64,
}

impl LvmBackend {
    /// A backend for thin pool `thin_pool` in volume group `volume_group`, allowing the virtual
    /// sizes of the pool's thin LVs to add up to `max_overprovision` times the pool size.
    ///
    /// Fails with [`BackendError::Unavailable`] when `lvm` is not installed, the volume group
    /// or the thin pool does not exist, or the names are not valid LVM names.
    pub fn probe(
        volume_group: &str,
        thin_pool: &str,
        max_overprovision: f64,
    ) -> Result<Self, BackendError> {
        for (what, name) in [("volume group", volume_group), ("thin pool", thin_pool)] {
            if !valid_lvm_name(name) {
                return Err(BackendError::Unavailable(format!(
                    "invalid {what} name {name:?}: use letters, digits and + _ . - (not starting with -)"
                )));
            }
        }
        if !(max_overprovision.is_finite() && max_overprovision > 0.0) {
            return Err(BackendError::Unavailable(format!(
                "invalid overprovision ratio {max_overprovision} for {volume_group}/{thin_pool}: use a positive number such as 1.0 or 2.5"
            )));
        }
        let lvm =
            Tool::find("lvm", "lvm2").map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let find = |name, package| Tool::find(name, package).map_err(|e| e.to_string());
        let backend = LvmBackend {
            lvm,
            filesystems: FilesystemTools::find(),
            e2fsck: find("e2fsck", "e2fsprogs"),
            resize2fs: find("resize2fs", "e2fsprogs"),
            volume_group: volume_group.to_string(),
            thin_pool: thin_pool.to_string(),
            max_overprovision,
        };

        let vgs = backend
            .report_vgs()
            .map_err(|e| BackendError::Unavailable(format!("cannot list volume groups: {e}")))?;
        if !vgs.iter().any(|vg| vg.vg_name == volume_group) {
            let names: Vec<_> = vgs.iter().map(|vg| vg.vg_name.as_str()).collect();
            return Err(BackendError::Unavailable(format!(
                "volume group {volume_group} not found (vgs lists: {}); create it or change the profile",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        }
        let lvs = backend.report_lvs().map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot list logical volumes of {volume_group}: {e}"
            ))
        })?;
        match lvs.iter().find(|lv| lv.lv_name == thin_pool) {
            Some(lv) if lv.is_thin_pool() => Ok(backend),
            Some(lv) => Err(BackendError::Unavailable(format!(
                "{volume_group}/{thin_pool} is not a thin pool (lv_attr {}); point the profile at a thin pool",
                lv.lv_attr
            ))),
            None => {
                let pools: Vec<_> =
                    lvs.iter().filter(|lv| lv.is_thin_pool()).map(|lv| lv.lv_name.as_str()).collect();
                Err(BackendError::Unavailable(format!(
                    "thin pool {thin_pool} not found in volume group {volume_group} (thin pools there: {}); \
                     create it with `lvcreate --type thin-pool -L SIZE -n {thin_pool} {volume_group}` or change the profile",
                    if pools.is_empty() { "none".to_string() } else { pools.join(", ") }
                )))
            }
        }
    }

    /// The volume group.
    pub fn volume_group(&self) -> &str {
        &self.volume_group
    }

    /// The thin pool.
    pub fn thin_pool(&self) -> &str {
        &self.thin_pool
    }

    /// The block device of volume `id`: `/dev/VG/dvol-<hex>`.
    pub fn device(&self, id: Uuid) -> PathBuf {
        self.device_of(&lv_name(id))
    }

    fn device_of(&self, lv: &str) -> PathBuf {
        Path::new("/dev").join(&self.volume_group).join(lv)
    }

    fn qualified(&self, lv: &str) -> String {
        format!("{}/{lv}", self.volume_group)
    }

    /// Runs an LVM report (`vgs`, `lvs`) of `fields` in JSON with sizes in bytes.
    fn report(&self, command: &str, fields: &str, extra: &[&str]) -> Result<String, BackendError> {
        let mut args = vec![
            command,
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
        ];
        args.extend_from_slice(extra);
        Ok(self.lvm.run(args)?)
    }

    fn report_vgs(&self) -> Result<Vec<VolumeGroup>, BackendError> {
        parse_vgs(&self.report("vgs", VG_FIELDS, &[])?).map_err(|e| unparsable("vgs", e))
    }

    /// Every (visible) LV of the volume group.
    fn report_lvs(&self) -> Result<Vec<LogicalVolume>, BackendError> {
        parse_lvs(&self.report("lvs", LV_FIELDS, &[&self.volume_group])?)
            .map_err(|e| unparsable("lvs", e))
    }

    /// The LV named `name`, if it exists.
    fn find_lv(lvs: &[LogicalVolume], name: &str) -> Option<LogicalVolume> {
        lvs.iter().find(|lv| lv.lv_name == name).cloned()
    }

    fn pool_usage(
        &self,
        lvs: &[LogicalVolume],
        exclude: &[String],
    ) -> Result<PoolUsage, BackendError> {
        PoolUsage::from_report(lvs, &self.volume_group, &self.thin_pool, exclude).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "thin pool {}/{} has disappeared; recreate it or change the profile",
                self.volume_group, self.thin_pool
            ))
        })
    }

    /// The LV `name` if it exists and dvol made it; an LV of that name without the dvol tags
    /// is refused rather than touched.
    fn own_lv(
        &self,
        lvs: &[LogicalVolume],
        name: &str,
    ) -> Result<Option<LogicalVolume>, BackendError> {
        match Self::find_lv(lvs, name) {
            Some(lv) if lv.dvol_name().is_some() => Ok(Some(lv)),
            Some(lv) => Err(BackendError::Refused(format!(
                "logical volume {} exists but was not made by dvol (tags: {}); dvol will not touch it",
                self.qualified(&lv.lv_name),
                if lv.lv_tags.is_empty() { "none".to_string() } else { lv.lv_tags.join(",") }
            ))),
            None => Ok(None),
        }
    }

    fn lvremove(&self, lv: &str) -> Result<(), BackendError> {
        self.lvm.run(["lvremove", "-y", &self.qualified(lv)])?;
        Ok(())
    }

    /// Activates the LV if its device node is missing (after a reboot without autoactivation).
    fn ensure_active(&self, lv: &LogicalVolume) -> Result<PathBuf, BackendError> {
        let device = self.device_of(&lv.lv_name);
        if !lv.is_active() || !device.exists() {
            self.lvm
                .run(["lvchange", "-ay", "-K", &self.qualified(&lv.lv_name)])?;
        }
        Ok(device)
    }

    /// Makes `name`, a thin snapshot of the LV `origin`, tagged `dvol` and `tags`. No size: a
    /// snapshot of a thin LV is a thin LV in the same pool sharing every block. Thin snapshots
    /// skip activation by default; `--setactivationskip n` makes this one activate.
    fn thin_snapshot(&self, origin: &str, name: &str, tags: &[&str]) -> Result<(), BackendError> {
        let origin = self.qualified(origin);
        let mut args = vec![
            "lvcreate",
            "-y",
            "-q",
            "--snapshot",
            "-n",
            name,
            "--addtag",
            DVOL_TAG,
        ];
        for tag in tags {
            args.extend(["--addtag", tag]);
        }
        args.extend(["--setactivationskip", "n", &origin]);
        self.lvm.run(args)?;
        Ok(())
    }

    /// Refuses a read point when the pool is so full that the writes copied away from the
    /// snapshot could fill it (a full thin pool stops every volume in it).
    fn check_read_point_room(&self, lvs: &[LogicalVolume], id: Uuid) -> Result<(), BackendError> {
        self.check_snapshot_room(lvs, id, "a commit")
    }

    /// Refuses a thin snapshot of volume `id` (for `why`) when the pool is nearly full.
    fn check_snapshot_room(
        &self,
        lvs: &[LogicalVolume],
        id: Uuid,
        why: &str,
    ) -> Result<(), BackendError> {
        let usage = self.pool_usage(lvs, &[])?;
        for (what, percent) in [
            ("data", usage.data_percent),
            ("metadata", usage.metadata_percent),
        ] {
            if percent > MAX_POOL_USAGE_PERCENT {
                return Err(BackendError::Refused(format!(
                    "cannot snapshot volume {id} for {why}: thin pool {} is {percent:.1}% full \
                     ({what}), above the {MAX_POOL_USAGE_PERCENT:.0}% limit; extend the pool \
                     (lvextend) or remove volumes",
                    usage.location
                )));
            }
        }
        Ok(())
    }

    /// LVs in the pool that are not volumes the caller knows: foreign LVs (not made by dvol),
    /// orphans (made by dvol for an id not in `known`) and unfinished creations. Only a
    /// report: nothing is changed.
    pub fn foreign_or_orphans(&self, known: &[Uuid]) -> Result<Vec<StrayVolume>, BackendError> {
        let lvs = self.report_lvs()?;
        Ok(strays(&lvs, &self.volume_group, &self.thin_pool, known))
    }

    /// Grows the filesystem on `device` to fill it: online where it is mounted, else offline.
    fn grow_filesystem(&self, id: Uuid, fs: Filesystem, device: &Path) -> Result<(), BackendError> {
        if let Some(mountpoint) = mount_points_of_device(device)?.into_iter().next() {
            return Ok(self.filesystems.grow(fs, device, &mountpoint)?);
        }
        match fs {
            Filesystem::Ext4 => {
                let e2fsck = self
                    .e2fsck
                    .as_ref()
                    .map_err(|m| BackendError::Unavailable(m.clone()))?;
                let resize2fs = self
                    .resize2fs
                    .as_ref()
                    .map_err(|m| BackendError::Unavailable(m.clone()))?;
                match e2fsck.run(["-f".as_ref(), "-y".as_ref(), device.as_os_str()]) {
                    // Exit code 1: errors were found and corrected.
                    Ok(_) | Err(CommandError::Failed { code: 1, .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                resize2fs.run([device])?;
                Ok(())
            }
            Filesystem::Xfs => {
                // xfs grows only while mounted: mount it privately for the moment.
                let dir = std::env::temp_dir().join(format!("dvol-grow-{}", id.simple()));
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(BackendError::io("create temporary mountpoint", &dir, e)),
                }
                let result = mount::mount_device(device, &dir, fs, None, "mount volume to grow it")
                    .and_then(|()| {
                        let grown = self
                            .filesystems
                            .grow(fs, device, &dir)
                            .map_err(BackendError::from);
                        let unmounted =
                            mount::unmount(&dir, "unmount temporary mount", WhenBusy::Fail);
                        grown.and(unmounted.map(drop))
                    });
                let _ = fs::remove_dir(&dir);
                result
            }
        }
    }
}

fn unparsable(command: &str, e: serde_json::Error) -> BackendError {
    BackendError::Unavailable(format!(
        "cannot parse the JSON report of `lvm {command}`: {e}; lvm2 2.02.158 or newer is needed"
    ))
}

fn strays(lvs: &[LogicalVolume], vg: &str, pool: &str, known: &[Uuid]) -> Vec<StrayVolume> {
    lvs.iter()
        .filter(|lv| lv.pool_lv == pool)
        .filter_map(|lv| {
            let kind = match lv.dvol_name() {
                None => StrayKind::Foreign,
                Some(NameKind::Incomplete(id)) => StrayKind::Incomplete(id),
                Some(NameKind::ReadPoint(id)) => StrayKind::ReadPoint(id),
                Some(NameKind::Complete(id)) if known.contains(&id) => return None,
                Some(NameKind::Complete(id)) => StrayKind::Orphan(id),
            };
            Some(StrayVolume {
                name: format!("{vg}/{}", lv.lv_name),
                kind,
            })
        })
        .collect()
}

fn volume_ids(lvs: &[LogicalVolume], pool: &str) -> Vec<Uuid> {
    let ids: BTreeSet<Uuid> = lvs
        .iter()
        .filter(|lv| lv.pool_lv == pool)
        .filter_map(|lv| match lv.dvol_name()? {
            NameKind::Complete(id) => Some(id),
            NameKind::Incomplete(_) | NameKind::ReadPoint(_) => None,
        })
        .collect();
    ids.into_iter().collect()
}

fn required_size(spec: &VolumeSpec) -> Result<ByteSize, BackendError> {
    spec.size.ok_or_else(|| {
        BackendError::Refused(format!(
            "volume {} needs a size on an LVM thin pool: set size in the profile or pass -o size=10G",
            spec.id
        ))
    })
}

impl Backend for LvmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lvm
    }

    fn location(&self) -> Option<String> {
        Some(format!("{}/{}", self.volume_group, self.thin_pool))
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        let size = required_size(spec)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        self.filesystems
            .check(fs)
            .map_err(BackendError::Unavailable)?;
        let min = minimum_size(fs);
        if size < min {
            return Err(BackendError::Refused(format!(
                "volume {} of {size} is too small for {fs}: the smallest {fs} volume is {min}",
                spec.id
            )));
        }
        let lvs = self.report_lvs()?;
        let own = [lv_name(spec.id), incomplete_lv_name(spec.id)];
        self.pool_usage(&lvs, &own)?
            .check_room(size.bytes(), self.max_overprovision)
            .map_err(BackendError::Refused)
    }

    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError> {
        let size = required_size(spec)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let name = lv_name(spec.id);
        let temporary = incomplete_lv_name(spec.id);
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &name)?.is_some() {
            return Ok(Effect::Unchanged);
        }
        if self.own_lv(&lvs, &temporary)?.is_some() {
            // A crash between lvcreate and the rename: the filesystem may be half made.
            tracing::warn!(lv = %self.qualified(&temporary), "removing unfinished volume before creating it again");
            self.lvremove(&temporary)?;
        }
        let bytes = format!("{}b", size.bytes());
        let pool = self.qualified(&self.thin_pool);
        let tag = id_tag(spec.id);
        self.lvm.run([
            "lvcreate",
            "-y",
            "-q",
            "--thin",
            "-V",
            &bytes,
            "-n",
            &temporary,
            "--addtag",
            DVOL_TAG,
            "--addtag",
            &tag,
            "--setactivationskip",
            "n",
            &pool,
        ])?;
        let device = self.device_of(&temporary);
        if !device.exists() {
            self.lvm
                .run(["lvchange", "-ay", "-K", &self.qualified(&temporary)])?;
        }
        self.filesystems.make(fs, &device)?;
        self.lvm
            .run(["lvrename", &self.volume_group, &temporary, &name])?;
        tracing::info!(lv = %self.qualified(&name), size = %size, filesystem = %fs, "created thin volume");
        Ok(Effect::Changed)
    }

    fn remove(&self, id: Uuid) -> Result<Effect, BackendError> {
        let lvs = self.report_lvs()?;
        let mut effect = Effect::Unchanged;
        for name in [read_point_lv_name(id), lv_name(id), incomplete_lv_name(id)] {
            if self.own_lv(&lvs, &name)?.is_some() {
                self.lvremove(&name)?;
                tracing::info!(lv = %self.qualified(&name), "removed thin volume");
                effect = Effect::Changed;
            }
        }
        Ok(effect)
    }

    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError> {
        let name = lv_name(spec.id);
        if is_mount_point(target)? {
            if mount_points_of_device(&self.device_of(&name))?
                .iter()
                .any(|p| p == target)
            {
                return Ok(Effect::Unchanged);
            }
            return Err(BackendError::io(
                "mount volume: something else is mounted at the target",
                target,
                std::io::Error::from(ErrorKind::ResourceBusy),
            ));
        }
        let lvs = self.report_lvs()?;
        let lv = self.own_lv(&lvs, &name)?.ok_or_else(|| {
            BackendError::io(
                "mount volume: its logical volume is missing",
                &self.device_of(&name),
                std::io::Error::from(ErrorKind::NotFound),
            )
        })?;
        let device = self.ensure_active(&lv)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        mount::mount_device(&device, target, fs, None, "mount volume")?;
        Ok(Effect::Changed)
    }

    fn unmount(&self, _id: Uuid, target: &Path) -> Result<Effect, BackendError> {
        // A block device must not be detached lazily: the filesystem would stay live with no
        // mountpoint, and removing the LV would fail later for no visible reason.
        let busy =
            WhenBusy::Explain("unmount volume (still in use by a process; stop it and retry)");
        mount::unmount(target, "unmount volume", busy)
    }

    fn resize(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        _target: &Path,
    ) -> Result<Effect, BackendError> {
        let name = lv_name(spec.id);
        let lvs = self.report_lvs()?;
        let lv = self.own_lv(&lvs, &name)?.ok_or_else(|| {
            BackendError::io(
                "resize volume: its logical volume is missing",
                &self.device_of(&name),
                std::io::Error::from(ErrorKind::NotFound),
            )
        })?;
        // The recorded size, or the LV's when none is recorded.
        let current = spec.size.map_or(lv.lv_size, ByteSize::bytes);
        if new_size.bytes() < current {
            return Err(BackendError::Refused(format!(
                "volume {} cannot shrink from {} to {new_size}: LVM volumes can only grow",
                spec.id,
                human(current)
            )));
        }
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let mut effect = Effect::Unchanged;
        if new_size.bytes() > lv.lv_size {
            self.pool_usage(&lvs, std::slice::from_ref(&name))?
                .check_room(new_size.bytes(), self.max_overprovision)
                .map_err(BackendError::Refused)?;
            let bytes = format!("{}b", new_size.bytes());
            self.lvm
                .run(["lvextend", "-q", "-L", &bytes, &self.qualified(&name)])?;
            effect = Effect::Changed;
        }
        // Also when the LV was already large enough: a crash may have come between lvextend
        // and growing the filesystem, and growing a filesystem that fills its device is a no-op.
        let device = self.ensure_active(&lv)?;
        self.grow_filesystem(spec.id, fs, &device)?;
        if effect == Effect::Changed {
            tracing::info!(lv = %self.qualified(&name), size = %new_size, "grew thin volume");
        }
        Ok(effect)
    }

    /// An instant thin snapshot of the volume's LV (`dvol-<hex>-rp`), mounted read-only at
    /// `scratch`. A leftover snapshot of the volume that is not mounted (a crash) is replaced;
    /// one that is mounted means another read point is in use and is refused.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        _mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        let origin = lv_name(spec.id);
        let snapshot = read_point_lv_name(spec.id);
        let device = self.device_of(&snapshot);
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &origin)?.is_none() {
            return Err(BackendError::io(
                "snapshot volume for a commit: its logical volume is missing",
                &self.device_of(&origin),
                std::io::Error::from(ErrorKind::NotFound),
            ));
        }
        if self.own_lv(&lvs, &snapshot)?.is_some() {
            if let Some(point) = mount_points_of_device(&device)?.first() {
                return Err(BackendError::Refused(format!(
                    "volume {} already has a read point mounted at {}: a commit is running; \
                     retry when it has finished",
                    spec.id,
                    point.display()
                )));
            }
            tracing::warn!(lv = %self.qualified(&snapshot), "removing a read point left by an interrupted commit");
            self.lvremove(&snapshot)?;
        }
        if is_mount_point(scratch)? {
            return Err(BackendError::io(
                "mount read point: something is already mounted on the scratch directory",
                scratch,
                std::io::Error::from(ErrorKind::ResourceBusy),
            ));
        }
        self.check_read_point_room(&lvs, spec.id)?;
        self.thin_snapshot(&origin, &snapshot, &[&id_tag(spec.id), READ_POINT_TAG])?;
        if !device.exists() {
            self.lvm
                .run(["lvchange", "-ay", "-K", &self.qualified(&snapshot)])?;
        }
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        if let Err(e) = mount_snapshot(fs, &device, scratch, "mount read point snapshot") {
            if let Err(cleanup) = self.lvremove(&snapshot) {
                tracing::warn!(lv = %self.qualified(&snapshot), error = %cleanup, "cannot remove read point after a failed mount");
            }
            return Err(e);
        }
        tracing::debug!(lv = %self.qualified(&snapshot), scratch = %scratch.display(), "made read point");
        Ok(ReadPoint::Snapshot(scratch.to_path_buf()))
    }

    /// Unmounts the snapshot from `scratch` if it is mounted there and removes the snapshot LV
    /// if it exists, whatever step a crash stopped at.
    fn release_read_point(
        &self,
        id: Uuid,
        _mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        let snapshot = read_point_lv_name(id);
        let device = self.device_of(&snapshot);
        let mut effect = Effect::Unchanged;
        if is_mount_point(scratch)? {
            if !mount_points_of_device(&device)?
                .iter()
                .any(|p| p == scratch)
            {
                return Err(BackendError::io(
                    "release read point: the scratch directory holds another mount, not the \
                     volume's snapshot; unmount it by hand",
                    scratch,
                    std::io::Error::from(ErrorKind::ResourceBusy),
                ));
            }
            let busy = WhenBusy::Explain(
                "unmount read point (a process still uses it; stop it and retry)",
            );
            effect = mount::unmount(scratch, "unmount read point", busy)?;
        }
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &snapshot)?.is_some() {
            self.lvremove(&snapshot)?;
            effect = Effect::Changed;
        }
        Ok(effect)
    }

    /// A thin snapshot of the source's LV, made under the new volume's unfinished name and
    /// tags and renamed into place: constant time, every block shared. `lvcreate` freezes the
    /// source's filesystem for the instant of the snapshot. An XFS copy gets its own UUID.
    fn clone_volume(
        &self,
        source: &VolumeSpec,
        _source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        if source.filesystem != target.filesystem || source.size != target.size {
            return Ok(None);
        }
        let origin = lv_name(source.id);
        let name = lv_name(target.id);
        let temporary = incomplete_lv_name(target.id);
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &name)?.is_some() {
            return Ok(Some(Effect::Unchanged));
        }
        if self.own_lv(&lvs, &temporary)?.is_some() {
            tracing::warn!(lv = %self.qualified(&temporary), "removing unfinished clone before cloning again");
            self.lvremove(&temporary)?;
        }
        if self.own_lv(&lvs, &origin)?.is_none() {
            return Err(BackendError::io(
                "clone volume: its logical volume is missing",
                &self.device_of(&origin),
                std::io::Error::from(ErrorKind::NotFound),
            ));
        }
        self.check_snapshot_room(&lvs, source.id, "a clone")?;
        self.thin_snapshot(&origin, &temporary, &[&id_tag(target.id)])?;
        let made = Self::find_lv(&self.report_lvs()?, &temporary).ok_or_else(|| {
            BackendError::io(
                "clone volume: the new snapshot is missing after lvcreate",
                &self.device_of(&temporary),
                std::io::Error::from(ErrorKind::NotFound),
            )
        })?;
        // Only the new volume's id may name it.
        let inherited = id_tag(source.id);
        if made.has_tag(&inherited) {
            self.lvm.run([
                "lvchange",
                "--deltag",
                &inherited,
                &self.qualified(&temporary),
            ])?;
        }
        let device = self.ensure_active(&made)?;
        let fs = target.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let scratch = std::env::temp_dir().join(format!("dvol-clone-{}", target.id));
        fs::create_dir_all(&scratch)
            .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
        let renamed = self.filesystems.new_identity(fs, &device, &scratch);
        let _ = fs::remove_dir(&scratch);
        if let Err(e) = renamed {
            if let Err(cleanup) = self.lvremove(&temporary) {
                tracing::warn!(lv = %self.qualified(&temporary), error = %cleanup, "cannot remove unfinished clone");
            }
            return Err(e);
        }
        self.lvm
            .run(["lvrename", &self.volume_group, &temporary, &name])?;
        tracing::info!(lv = %self.qualified(&name), from = %self.qualified(&origin), "cloned thin volume");
        Ok(Some(Effect::Changed))
    }

    fn capacity(&self) -> Result<Capacity, BackendError> {
        let lvs = self.report_lvs()?;
        let usage = self.pool_usage(&lvs, &[])?;
        Ok(Capacity {
            total_bytes: usage.size,
            free_bytes: usage.free(),
        })
    }

    fn volumes(&self) -> Result<Vec<Uuid>, BackendError> {
        let lvs = self.report_lvs()?;
        Ok(volume_ids(&lvs, &self.thin_pool))
    }

    fn strays(&self, known: &[Uuid]) -> Result<Vec<String>, BackendError> {
        Ok(self
            .foreign_or_orphans(known)?
            .iter()
            .map(ToString::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lvm lvs --reportformat json --units b --nosuffix -o <LV_FIELDS> dvoltest` as lvm2 2.03.16
    /// prints it in the test VM (layout, quoting and the pool and volume rows are captured
    /// output; the other rows are edited copies): the pool, a dvol volume, an unfinished one,
    /// an orphan, a foreign LV named like dvol's, a foreign thin LV, a second, nearly full pool
    /// with its thin LV, a plain LV outside any pool, and the snapshot behind a read point.
    const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"other", "vg_name":"dvoltest", "lv_attr":"twi-aotz--", "lv_size":"33554432", "data_percent":"96.88", "metadata_percent":"11.43", "pool_lv":"", "lv_tags":""},
                  {"lv_name":"pool", "vg_name":"dvoltest", "lv_attr":"twi-aotz--", "lv_size":"536870912", "data_percent":"12.50", "metadata_percent":"10.94", "pool_lv":"", "lv_tags":""},
                  {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8", "vg_name":"dvoltest", "lv_attr":"Vwi-aotz--", "lv_size":"67108864", "data_percent":"7.42", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8"},
                  {"lv_name":"dvol-0f1e2d3c4b5a69788796a5b4c3d2e1f0-new", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"104857600", "data_percent":"0.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
                  {"lv_name":"dvol-11111111222233334444555555555555", "vg_name":"dvoltest", "lv_attr":"Vwi---tz--", "lv_size":"209715200", "data_percent":"", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_11111111222233334444555555555555"},
                  {"lv_name":"dvol-22222222222233334444555555555555", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"4194304", "data_percent":"0.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":""},
                  {"lv_name":"scratch", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"134217728", "data_percent":"3.10", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"backup"},
                  {"lv_name":"filler", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"33554432", "data_percent":"96.88", "metadata_percent":"", "pool_lv":"other", "lv_tags":""},
                  {"lv_name":"plain", "vg_name":"dvoltest", "lv_attr":"-wi-a-----", "lv_size":"8388608", "data_percent":"", "metadata_percent":"", "pool_lv":"", "lv_tags":"dvol"},
                  {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8-rp", "vg_name":"dvoltest", "lv_attr":"Vwi-aotz--", "lv_size":"67108864", "data_percent":"7.42", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8,dvol_read_point"}
              ]
          }
      ]
  }
"#;

    /// `lvm vgs --reportformat json --units b --nosuffix -o <VG_FIELDS>`, captured in the VM.
    const VGS: &str = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"dvoltest", "vg_size":"1069547520", "vg_free":"524288000"}
              ]
          }
      ]
  }
"#;

    /// What `lvm lvs` prints for a volume group with no LVs.
    const LVS_EMPTY: &str = r#"{"report": [{"lv": []}]}"#;

    /// The `json_std` flavour: numbers as numbers, missing values as null.
    const LVS_STD: &str = r#"{"report": [{"lv": [
        {"lv_name":"pool", "vg_name":"vg", "lv_attr":"twi-aotz--", "lv_size":1073741824, "data_percent":50.5, "metadata_percent":1.5, "pool_lv":"", "lv_tags":[]},
        {"lv_name":"x", "vg_name":"vg", "lv_attr":"Vwi-aotz--", "lv_size":4194304, "data_percent":null, "metadata_percent":null, "pool_lv":"pool", "lv_tags":["a","b"]}
    ]}]}"#;

    const MIB: u64 = 1 << 20;

    fn id(hex: &str) -> Uuid {
        Uuid::parse_str(hex).unwrap()
    }

    #[test]
    fn parses_lvs_json_reports_into_typed_rows() {
        let lvs = parse_lvs(LVS).unwrap();
        assert_eq!(lvs.len(), 10);
        let pool = &lvs[1];
        assert_eq!(pool.lv_name, "pool");
        assert_eq!(pool.vg_name, "dvoltest");
        assert!(pool.is_thin_pool());
        assert!(pool.is_active());
        assert_eq!(pool.lv_size, 512 * MIB);
        assert_eq!(pool.data_percent, Some(12.5));
        assert_eq!(pool.metadata_percent, Some(10.94));
        let volume = &lvs[2];
        assert!(!volume.is_thin_pool());
        assert_eq!(volume.pool_lv, "pool");
        assert_eq!(volume.metadata_percent, None);
        assert_eq!(
            volume.lv_tags,
            vec!["dvol", "dvol_67e5504410b1426f9247bb680e5fe0c8"]
        );
        assert!(!lvs[4].is_active());
        assert_eq!(lvs[4].data_percent, None);
        assert!(lvs[5].lv_tags.is_empty());
        assert!(parse_lvs(LVS_EMPTY).unwrap().is_empty());
    }

    #[test]
    fn parses_json_std_reports_too() {
        let lvs = parse_lvs(LVS_STD).unwrap();
        assert_eq!(lvs[0].lv_size, 1 << 30);
        assert_eq!(lvs[0].data_percent, Some(50.5));
        assert_eq!(lvs[1].data_percent, None);
        assert_eq!(lvs[1].lv_tags, vec!["a", "b"]);
    }

    #[test]
    fn parses_vgs_json_reports() {
        let vgs = parse_vgs(VGS).unwrap();
        assert_eq!(
            vgs,
            vec![VolumeGroup {
                vg_name: "dvoltest".into(),
                vg_size: 1020 * MIB,
                vg_free: 500 * MIB,
            }]
        );
    }

    #[test]
    fn garbage_reports_are_errors_not_empty_lists() {
        assert!(parse_lvs("  LV   VG   Attr\n  pool dvoltest twi-aotz--").is_err());
        assert!(parse_lvs(r#"{"report": [{"lv": [{"lv_name":"x"}]}]}"#).is_err());
        assert!(parse_lvs(r#"{"report": [{"lv": [{"lv_name":"x", "vg_name":"v", "lv_attr":"", "lv_size":"12k"}]}]}"#).is_err());
        assert!(parse_vgs("{}").is_err());
    }

    #[test]
    fn names_and_tags_round_trip() {
        let volume = id("67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(lv_name(volume), "dvol-67e5504410b1426f9247bb680e5fe0c8");
        assert_eq!(
            incomplete_lv_name(volume),
            "dvol-67e5504410b1426f9247bb680e5fe0c8-new"
        );
        assert_eq!(id_tag(volume), "dvol_67e5504410b1426f9247bb680e5fe0c8");
        assert_eq!(
            parse_name(&lv_name(volume)),
            Some(NameKind::Complete(volume))
        );
        assert_eq!(
            parse_name(&incomplete_lv_name(volume)),
            Some(NameKind::Incomplete(volume))
        );
        assert_eq!(
            read_point_lv_name(volume),
            "dvol-67e5504410b1426f9247bb680e5fe0c8-rp"
        );
        assert_eq!(
            parse_name(&read_point_lv_name(volume)),
            Some(NameKind::ReadPoint(volume))
        );
        assert!(valid_lvm_name(&read_point_lv_name(volume)));
        for other in [
            "dvol-67e5504410b1426f9247bb680e5fe0c8-rp-new",
            "pool",
            "dvol-",
            "dvol-67e55044-10b1-426f-9247-bb680e5fe0c8",
            "dvol-67E5504410B1426F9247BB680E5FE0C8",
            "dvol-67e5504410b1426f9247bb680e5fe0c8-old",
            "xdvol-67e5504410b1426f9247bb680e5fe0c8",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        // LV names stay well inside LVM's limit of 127 characters.
        assert!(incomplete_lv_name(volume).len() < 64);
        assert!(valid_lvm_name(&incomplete_lv_name(volume)));
    }

    #[test]
    fn checks_vg_and_pool_names_before_they_reach_a_command_line() {
        for good in ["dvol", "vg0", "gold_pool", "a.b-c+d"] {
            assert!(valid_lvm_name(good), "{good}");
        }
        for bad in ["", "-y", "..", ".", "a/b", "a b", "vg;rm", &"x".repeat(128)] {
            assert!(!valid_lvm_name(bad), "{bad}");
        }
    }

    #[test]
    fn lists_only_finished_dvol_volumes_of_this_pool() {
        let lvs = parse_lvs(LVS).unwrap();
        assert_eq!(
            volume_ids(&lvs, "pool"),
            vec![
                id("11111111222233334444555555555555"),
                id("67e5504410b1426f9247bb680e5fe0c8"),
            ]
        );
        assert!(volume_ids(&lvs, "other").is_empty());
    }

    #[test]
    fn a_read_point_needs_all_three_tags_to_be_dvols() {
        let lvs = parse_lvs(LVS).unwrap();
        let mut snapshot = lvs.last().unwrap().clone();
        let volume = id("67e5504410b1426f9247bb680e5fe0c8");
        assert_eq!(snapshot.dvol_name(), Some(NameKind::ReadPoint(volume)));
        snapshot.lv_tags.retain(|t| t != READ_POINT_TAG);
        assert_eq!(snapshot.dvol_name(), None);
        let found = strays(&[snapshot], "dvoltest", "pool", &[volume]);
        assert_eq!(found[0].kind, StrayKind::Foreign);
    }

    #[test]
    fn reports_foreign_orphan_and_unfinished_lvs_of_this_pool() {
        let lvs = parse_lvs(LVS).unwrap();
        let known = [id("67e5504410b1426f9247bb680e5fe0c8")];
        let found = strays(&lvs, "dvoltest", "pool", &known);
        let kinds: Vec<_> = found.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "dvoltest/dvol-0f1e2d3c4b5a69788796a5b4c3d2e1f0-new",
                    StrayKind::Incomplete(id("0f1e2d3c4b5a69788796a5b4c3d2e1f0"))
                ),
                (
                    "dvoltest/dvol-11111111222233334444555555555555",
                    StrayKind::Orphan(id("11111111222233334444555555555555"))
                ),
                // Named like dvol's but without its tags: not dvol's.
                (
                    "dvoltest/dvol-22222222222233334444555555555555",
                    StrayKind::Foreign
                ),
                ("dvoltest/scratch", StrayKind::Foreign),
                // A read point's snapshot is reported as what it is, also for a known volume.
                (
                    "dvoltest/dvol-67e5504410b1426f9247bb680e5fe0c8-rp",
                    StrayKind::ReadPoint(id("67e5504410b1426f9247bb680e5fe0c8"))
                ),
            ]
        );
        assert!(
            found[4].to_string().contains("read point")
                && found[4].to_string().contains("not a volume"),
            "{}",
            found[4]
        );
        assert!(
            found[3].to_string().contains("not made by dvol"),
            "{}",
            found[3]
        );
        assert!(found[1].to_string().contains("not known"), "{}", found[1]);
    }

    #[test]
    fn pool_usage_sums_virtual_sizes_of_the_pools_thin_lvs() {
        let lvs = parse_lvs(LVS).unwrap();
        let usage = PoolUsage::from_report(&lvs, "dvoltest", "pool", &[]).unwrap();
        assert_eq!(usage.location, "dvoltest/pool");
        assert_eq!(usage.size, 512 * MIB);
        // The read point's snapshot (64 MiB virtual) shares its origin's blocks: not counted.
        assert_eq!(usage.provisioned, (64 + 100 + 200 + 4 + 128) * MIB);
        assert_eq!(usage.free(), 448 * MIB);
        let excluding =
            PoolUsage::from_report(&lvs, "dvoltest", "pool", &["scratch".to_string()]).unwrap();
        assert_eq!(excluding.provisioned, (64 + 100 + 200 + 4) * MIB);
        // Not a thin pool, or not there at all.
        assert!(PoolUsage::from_report(&lvs, "dvoltest", "plain", &[]).is_none());
        assert!(PoolUsage::from_report(&lvs, "dvoltest", "missing", &[]).is_none());
    }

    fn usage(size: u64, provisioned: u64, data: f64, metadata: f64) -> PoolUsage {
        PoolUsage {
            location: "vg/pool".into(),
            size,
            data_percent: data,
            metadata_percent: metadata,
            provisioned,
        }
    }

    #[test]
    fn overprovision_limit_is_pool_size_times_ratio() {
        let pool = usage(1024 * MIB, 1536 * MIB, 10.0, 5.0);
        // 1.5 GiB + 512 MiB = 2 GiB = exactly 2x: allowed.
        pool.check_room(512 * MIB, 2.0).unwrap();
        let err = pool.check_room(513 * MIB, 2.0).unwrap_err();
        for part in [
            "vg/pool",
            "1.5GiB already provisioned",
            "513MiB requested",
            "2x",
            "pool size of 1GiB",
            "2GiB allowed",
        ] {
            assert!(err.contains(part), "{part:?} missing in: {err}");
        }
        // Ratio 1.0: no overprovisioning at all.
        usage(1024 * MIB, 0, 0.0, 0.0)
            .check_room(1024 * MIB, 1.0)
            .unwrap();
        assert!(usage(1024 * MIB, 0, 0.0, 0.0)
            .check_room(1025 * MIB, 1.0)
            .is_err());
        // Fractional ratios.
        usage(1000 * MIB, 0, 0.0, 0.0)
            .check_room(2500 * MIB, 2.5)
            .unwrap();
        assert!(usage(1000 * MIB, 1, 0.0, 0.0)
            .check_room(2500 * MIB, 2.5)
            .is_err());
    }

    #[test]
    fn refuses_new_volumes_when_data_or_metadata_is_nearly_full() {
        let err = usage(1024 * MIB, 0, 95.1, 1.0)
            .check_room(MIB, 10.0)
            .unwrap_err();
        assert!(err.contains("95.1% full (data)"), "{err}");
        let err = usage(1024 * MIB, 0, 1.0, 99.0)
            .check_room(MIB, 10.0)
            .unwrap_err();
        assert!(err.contains("99.0% full (metadata)"), "{err}");
        usage(1024 * MIB, 0, 95.0, 95.0)
            .check_room(MIB, 10.0)
            .unwrap();
        let lvs = parse_lvs(LVS).unwrap();
        let other = PoolUsage::from_report(&lvs, "dvoltest", "other", &[]).unwrap();
        assert!(other
            .check_room(MIB, 10.0)
            .unwrap_err()
            .contains("dvoltest/other is 96.9% full"));
    }

    #[test]
    fn free_space_follows_data_usage() {
        assert_eq!(usage(1000, 0, 0.0, 0.0).free(), 1000);
        assert_eq!(usage(1000, 0, 25.0, 0.0).free(), 750);
        assert_eq!(usage(1000, 0, 100.0, 0.0).free(), 0);
        assert_eq!(usage(1000, 0, 120.0, 0.0).free(), 0);
    }

    #[test]
    fn messages_use_binary_units() {
        assert_eq!(human(512 * MIB), "512MiB");
        assert_eq!(human(0), "0B");
        assert_eq!(human(3 << 29), "1.5GiB");
    }
}
