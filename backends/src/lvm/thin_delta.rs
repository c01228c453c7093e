//! Which blocks differ between two thin devices of the pool, from the pool's own metadata:
//! `thin_delta` on a metadata snapshot the kernel keeps while it reads (`dmsetup message
//! <pool>-tpool 0 reserve_metadata_snap`, then `release_metadata_snap`). Reserving commits the
//! pool's open transaction first, so the snapshot holds every thin snapshot made before it.
//!
//! `thin_delta` reports ranges of the thin devices' block addresses, in units of the pool's
//! data block (`data_block_size`, in 512-byte sectors): `same` (both map the block to the same
//! data block), `different` (both map it, to different data blocks), `left_only` and
//! `right_only` (one maps it, the other does not). Everything but `same` is a change.
//!
//! A pool has one metadata snapshot at a time: one process-wide lock covers the reservation,
//! the reads and the release. A reservation a crash left is released before reserving again.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quick_xml::events::{BytesStart, Event};

use super::LvmBackend;
use crate::command::Tool;
use crate::BackendError;

/// The metadata snapshot of any pool, held by one reader at a time in this process.
static METADATA_SNAPSHOT: Mutex<()> = Mutex::new(());

/// The tools that read a thin pool's metadata.
#[derive(Debug, Clone)]
pub(super) struct ThinTools {
    dmsetup: Tool,
    thin_delta: Tool,
}

impl ThinTools {
    /// `dmsetup` and `thin_delta`, if both are installed.
    pub(super) fn find() -> Result<Self, String> {
        let find = |name, package| Tool::find(name, package).map_err(|e| e.to_string());
        Ok(ThinTools {
            dmsetup: find("dmsetup", "dmsetup")?,
            thin_delta: find("thin_delta", "thin-provisioning-tools")?,
        })
    }
}

/// How two thin devices differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delta {
    /// The pool's data block, in bytes: the unit of every range.
    pub(crate) block_bytes: u64,
    /// The device byte ranges where the two differ, sorted and merged.
    pub(crate) changed: Vec<Range<u64>>,
    /// Bytes the left device maps to data blocks the right does not share (`different` and
    /// `left_only`): what the left holds alone.
    pub(crate) left_alone: u64,
}

/// Why `thin_delta`'s report could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the report of thin_delta: {reason}")]
pub(crate) struct UnreadableDelta {
    reason: String,
}

/// The differences in a `thin_delta` XML report.
pub(crate) fn parse_delta(xml: &str) -> Result<Delta, UnreadableDelta> {
    let fail = |reason: String| UnreadableDelta { reason };
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut block_bytes = None;
    let mut blocks: Vec<(Range<u64>, bool)> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| fail(format!("not XML: {e}")))?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => e,
            Event::Eof => break,
            _ => continue,
        };
        let left_holds = match element.name().as_ref() {
            b"superblock" => {
                let sectors = number(element, "data_block_size").map_err(fail)?;
                if sectors == 0 {
                    return Err(fail("data_block_size is 0".into()));
                }
                block_bytes = Some(sectors * 512);
                continue;
            }
            b"different" | b"left_only" => true,
            b"right_only" => false,
            _ => continue,
        };
        let begin = number(element, "begin").map_err(fail)?;
        let length = number(element, "length").map_err(fail)?;
        let end = begin
            .checked_add(length)
            .ok_or_else(|| fail(format!("range {begin}+{length} overflows")))?;
        blocks.push((begin..end, left_holds));
    }
    let block_bytes = block_bytes.ok_or_else(|| fail("no superblock element".into()))?;
    let bytes = |blocks: u64| {
        blocks
            .checked_mul(block_bytes)
            .ok_or_else(|| fail(format!("block {blocks} is beyond any device")))
    };
    let mut changed: Vec<Range<u64>> = Vec::new();
    let mut left_alone = 0u64;
    blocks.sort_by_key(|(r, _)| r.start);
    for (range, left_holds) in blocks {
        let range = bytes(range.start)?..bytes(range.end)?;
        if left_holds {
            left_alone = left_alone.saturating_add(range.end - range.start);
        }
        match changed.last_mut() {
            Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
            _ => changed.push(range),
        }
    }
    Ok(Delta {
        block_bytes,
        changed,
        left_alone,
    })
}

/// The unsigned number in attribute `name` of `element`.
fn number(element: &BytesStart<'_>, name: &str) -> Result<u64, String> {
    let tag = String::from_utf8_lossy(element.name().as_ref()).into_owned();
    let attribute = element
        .try_get_attribute(name)
        .map_err(|e| format!("<{tag}>: {e}"))?
        .ok_or_else(|| format!("<{tag}> has no {name}"))?;
    std::str::from_utf8(&attribute.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "<{tag} {name}={:?}> is not a number",
                String::from_utf8_lossy(&attribute.value)
            )
        })
}

/// A device-mapper name part: LVM doubles each `-` in VG and LV names.
fn dm_part(name: &str) -> String {
    name.replace('-', "--")
}

impl LvmBackend {
    /// The device of the pool itself (`VG-POOL-tpool`), which takes the metadata messages.
    fn pool_device(&self) -> PathBuf {
        Path::new("/dev/mapper").join(format!(
            "{}-{}-tpool",
            dm_part(&self.volume_group),
            dm_part(&self.thin_pool)
        ))
    }

    /// The pool's metadata device (`VG-POOL_tmeta`), which `thin_delta` reads.
    fn metadata_device(&self) -> PathBuf {
        Path::new("/dev/mapper").join(format!(
            "{}-{}",
            dm_part(&self.volume_group),
            dm_part(&format!("{}_tmeta", self.thin_pool))
        ))
    }

    /// Runs `read` with the tools while the pool's metadata snapshot is reserved, and releases
    /// it after, whatever `read` returned.
    pub(super) fn with_metadata_snapshot<T>(
        &self,
        read: impl FnOnce(&ThinTools, &Path) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let tools = self.thin_tools.as_ref().map_err(|missing| {
            BackendError::Unavailable(format!(
                "cannot read the metadata of thin pool {}: {missing}",
                self.qualified(&self.thin_pool)
            ))
        })?;
        let _held = METADATA_SNAPSHOT.lock().unwrap_or_else(|e| e.into_inner());
        let pool = self.pool_device();
        let pool_arg = pool.to_string_lossy();
        let message = |what: &str| {
            tools
                .dmsetup
                .run(["message", pool_arg.as_ref(), "0", what])
                .map(drop)
        };
        if let Err(first) = message("reserve_metadata_snap") {
            // Only one can be held: a crash left one, or it is not ours. Either way it is
            // released and reserved again once.
            tracing::warn!(pool = %pool.display(), error = %first, "the pool's metadata snapshot is held; releasing it and reserving it again");
            message("release_metadata_snap")?;
            message("reserve_metadata_snap")?;
        }
        let result = read(tools, &self.metadata_device());
        if let Err(e) = message("release_metadata_snap") {
            tracing::warn!(pool = %pool.display(), error = %e, "cannot release the pool's metadata snapshot; the next reader releases it");
        }
        result
    }
}

impl ThinTools {
    /// How thin device `right` differs from thin device `left`, from the metadata snapshot of
    /// `metadata` (see [`LvmBackend::with_metadata_snapshot`]).
    pub(super) fn delta(
        &self,
        metadata: &Path,
        left: u64,
        right: u64,
    ) -> Result<Delta, BackendError> {
        let (left, right) = (left.to_string(), right.to_string());
        let xml = self.thin_delta.run([
            "--metadata-snap",
            "--snap1",
            left.as_str(),
            "--snap2",
            right.as_str(),
            metadata.to_string_lossy().as_ref(),
        ])?;
        parse_delta(&xml).map_err(|e| BackendError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Metadata with device 1 and device 2, a snapshot of it that kept blocks 0-1 and 3,
    /// rewrote 2, dropped 10 and gained 12 (64 KiB data blocks).
    const METADATA: &str = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="10" data_block="20" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
    <single_mapping origin_block="2" data_block="30" time="1"/>
    <single_mapping origin_block="3" data_block="3" time="0"/>
    <single_mapping origin_block="12" data_block="31" time="1"/>
  </device>
</superblock>
"#;

    #[test]
    fn a_report_gives_the_changed_byte_ranges_and_what_the_left_holds_alone() {
        let xml = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1000">
  <diff left="1" right="2">
    <same begin="0" length="2"/>
    <different begin="2" length="1"/>
    <same begin="3" length="1"/>
    <right_only begin="4" length="2"/>
    <left_only begin="10" length="1"/>
    <right_only begin="12" length="1"/>
  </diff>
</superblock>"#;
        let block = 64 << 10;
        assert_eq!(
            parse_delta(xml).unwrap(),
            Delta {
                block_bytes: block,
                changed: vec![
                    2 * block..3 * block,
                    4 * block..6 * block,
                    10 * block..11 * block,
                    12 * block..13 * block
                ],
                left_alone: 2 * block,
            }
        );
        // Adjacent ranges merge.
        let xml = r#"<superblock data_block_size="2048"><diff><different begin="0" length="1"/><right_only begin="1" length="1"/></diff></superblock>"#;
        assert_eq!(parse_delta(xml).unwrap().changed, vec![0..2 * MIB]);
    }

    #[test]
    fn a_report_that_is_not_thin_deltas_is_refused_with_the_reason() {
        for (xml, says) in [
            ("", "no superblock"),
            ("<diff><different begin=\"1\" length=\"1\"/></diff>", "no superblock"),
            ("<superblock data_block_size=\"0\"/>", "data_block_size is 0"),
            ("<superblock data_block_size=\"128\"><different begin=\"x\" length=\"1\"/></superblock>", "is not a number"),
            ("<superblock data_block_size=\"128\"><left_only length=\"1\"/></superblock>", "has no begin"),
            ("<superblock data_block_size=\"128\"><different begin=\"18446744073709551615\" length=\"2\"/></superblock>", "overflows"),
            ("<superblock data_block_size=\"128\"><different begin=\"18446744073709551000\" length=\"2\"/></superblock>", "beyond any device"),
        ] {
            let err = parse_delta(xml).unwrap_err().to_string();
            assert!(err.contains(says), "{xml:?}: {err}");
        }
    }

    #[test]
    fn device_mapper_names_double_the_dashes_of_lvm_names() {
        assert_eq!(dm_part("my-vg"), "my--vg");
        assert_eq!(dm_part("pool"), "pool");
    }

    /// The real `thin_delta` on metadata written by the real `thin_restore`: its report is
    /// the one [`parse_delta`] reads.
    #[test]
    fn thin_delta_reports_what_parse_delta_reads() {
        let (Ok(restore), Ok(delta)) = (
            Tool::find("thin_restore", "thin-provisioning-tools"),
            Tool::find("thin_delta", "thin-provisioning-tools"),
        ) else {
            assert!(
                std::env::var("DVOL_REQUIRE_ALL").as_deref() != Ok("1"),
                "thin_restore and thin_delta are needed (DVOL_REQUIRE_ALL=1); run scripts/install-deps.sh"
            );
            eprintln!("skipped: thin-provisioning-tools are not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("metadata.xml");
        let metadata = dir.path().join("metadata");
        std::fs::write(&xml, METADATA).unwrap();
        std::fs::File::create(&metadata)
            .unwrap()
            .set_len(8 * MIB)
            .unwrap();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        restore
            .run(["-i", &path(&xml), "-o", &path(&metadata)])
            .unwrap();
        let report = delta
            .run(["--snap1", "1", "--snap2", "2", &path(&metadata)])
            .unwrap();
        let block = 64 << 10;
        assert_eq!(
            parse_delta(&report).unwrap(),
            Delta {
                block_bytes: block,
                changed: vec![
                    2 * block..3 * block,
                    10 * block..11 * block,
                    12 * block..13 * block
                ],
                left_alone: 2 * block,
            },
            "{report}"
        );
    }
}
