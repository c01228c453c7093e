//! How dvol names and tags the LVs it makes, and which names it accepts from a profile.
//!
//! A volume `id` is the LV `dvol-<id as 32 hex digits>`, tagged `dvol` and `dvol_<hex>`;
//! while it is being made, `dvol-<hex>-new`; the snapshot behind its read point,
//! `dvol-<hex>-rp`, also tagged `dvol_read_point`; a read point kept as the base of the next
//! commit's changed ranges, `dvol-<hex>-base`, tagged as the read point it was.

use uuid::Uuid;

/// The tag on every LV dvol makes.
pub const DVOL_TAG: &str = "dvol";

/// The extra tag on the thin snapshot behind a read point.
pub const READ_POINT_TAG: &str = "dvol_read_point";

const NAME_PREFIX: &str = "dvol-";
const INCOMPLETE_SUFFIX: &str = "-new";
const READ_POINT_SUFFIX: &str = "-rp";
const BASE_SUFFIX: &str = "-base";

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

/// The LV name of volume `id`'s base, the read point of its last recorded commit, kept to
/// count the next commit's changed ranges from: `dvol-<hex>-base`.
pub fn base_lv_name(id: Uuid) -> String {
    format!("{}{BASE_SUFFIX}", lv_name(id))
}

/// The tag naming volume `id` on its LV: `dvol_<32 hex digits>`.
pub fn id_tag(id: Uuid) -> String {
    format!("{DVOL_TAG}_{}", id.simple())
}

/// What an LV name says about the volume it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind {
    /// `dvol-<hex>`: a finished volume.
    Complete(Uuid),
    /// `dvol-<hex>-new`: a volume whose creation did not finish.
    Incomplete(Uuid),
    /// `dvol-<hex>-rp`: the snapshot behind a read point of a volume.
    ReadPoint(Uuid),
    /// `dvol-<hex>-base`: a volume's read point, kept as the base of changed ranges.
    Base(Uuid),
}

impl NameKind {
    /// The volume the LV belongs to.
    pub(super) fn id(self) -> Uuid {
        match self {
            NameKind::Complete(id)
            | NameKind::Incomplete(id)
            | NameKind::ReadPoint(id)
            | NameKind::Base(id) => id,
        }
    }

    /// Whether the LV is a snapshot of the volume rather than the volume: a read point or a
    /// base. Snapshots share their origin's blocks and are not counted as volumes.
    pub(super) fn is_snapshot(self) -> bool {
        matches!(self, NameKind::ReadPoint(_) | NameKind::Base(_))
    }
}

/// What kind of dvol LV `name` names, if it is one: only the forms the functions above write.
pub(super) fn parse_name(name: &str) -> Option<NameKind> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    type Kind = fn(Uuid) -> NameKind;
    let (hex, kind): (&str, Kind) = if let Some(hex) = rest.strip_suffix(INCOMPLETE_SUFFIX) {
        (hex, NameKind::Incomplete)
    } else if let Some(hex) = rest.strip_suffix(READ_POINT_SUFFIX) {
        (hex, NameKind::ReadPoint)
    } else if let Some(hex) = rest.strip_suffix(BASE_SUFFIX) {
        (hex, NameKind::Base)
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

/// Whether `name` is a valid VG or LV name that cannot be mistaken for an option.
pub(super) fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}
