//! What `lvm lvs` and `lvm vgs` report, parsed from their JSON (`--reportformat json`, sizes
//! in bytes) into typed rows, never by scraping text columns. Both of LVM's JSON flavours are
//! read: `json` (every value a string) and `json_std` (numbers as numbers, null for none).

use serde::{Deserialize, Deserializer};

use super::names::{id_tag, parse_name, NameKind, DVOL_TAG, READ_POINT_TAG};
use crate::BackendError;

/// The `lvs` fields [`LogicalVolume`] holds.
pub(super) const LV_FIELDS: &str =
    "lv_name,vg_name,lv_attr,lv_size,data_percent,metadata_percent,pool_lv,lv_tags,thin_id";
/// The `vgs` fields [`VolumeGroup`] holds.
pub(super) const VG_FIELDS: &str = "vg_name,vg_size,vg_free";

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
    /// The thin device's id in its pool's metadata (thin LVs only), which `thin_delta` takes.
    #[serde(default, deserialize_with = "count_field")]
    pub thin_id: Option<u64>,
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

    /// The volume a dvol-made LV holds: its name and its id tag must agree (and a read point,
    /// or a base, which was one, must carry the read point tag).
    pub(super) fn dvol_name(&self) -> Option<NameKind> {
        if !self.has_tag(DVOL_TAG) {
            return None;
        }
        let kind = parse_name(&self.lv_name)?;
        if kind.is_snapshot() && !self.has_tag(READ_POINT_TAG) {
            return None;
        }
        self.has_tag(&id_tag(kind.id())).then_some(kind)
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
    optional_number(d, "a percentage", Some)
}

fn count_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    optional_number(d, "a count", |n| {
        (n >= 0.0 && n.fract() == 0.0).then_some(n as u64)
    })
}

/// A number that may be missing (empty text, null): parsed from text, or taken from a JSON
/// number by `from_number` (`None`: not `what`).
fn optional_number<'de, D: Deserializer<'de>, T: std::str::FromStr>(
    d: D,
    what: &str,
    from_number: fn(f64) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    let not = |shown: String| serde::de::Error::custom(format!("not {what}: {shown}"));
    match RawValue::deserialize(d)? {
        RawValue::Text(s) if s.trim().is_empty() => Ok(None),
        RawValue::Text(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| not(format!("{s:?}"))),
        RawValue::Number(n) => from_number(n).map(Some).ok_or_else(|| not(n.to_string())),
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

/// The LV rows of an `lvs` report.
pub(super) fn parse_lvs(json: &str) -> Result<Vec<LogicalVolume>, serde_json::Error> {
    let report: LvsReport = serde_json::from_str(json)?;
    Ok(report.report.into_iter().flat_map(|s| s.lv).collect())
}

/// The VG rows of a `vgs` report.
pub(super) fn parse_vgs(json: &str) -> Result<Vec<VolumeGroup>, serde_json::Error> {
    let report: VgsReport = serde_json::from_str(json)?;
    Ok(report.report.into_iter().flat_map(|s| s.vg).collect())
}

/// The error for a report that is not the JSON this module reads.
pub(super) fn unparsable(command: &str, e: serde_json::Error) -> BackendError {
    BackendError::Unavailable(format!(
        "cannot parse the JSON report of `lvm {command}`: {e}; lvm2 2.02.158 or newer is needed"
    ))
}
