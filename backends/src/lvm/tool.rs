//! Running `lvm` for the backend: the JSON reports of the volume group, finding the LVs dvol
//! made (and refusing to touch one of the same name it did not), removing and activating LVs.

use std::io::ErrorKind;
use std::path::PathBuf;

use super::report::{
    parse_lvs, parse_vgs, unparsable, LogicalVolume, VolumeGroup, LV_FIELDS, VG_FIELDS,
};
use super::LvmBackend;
use crate::BackendError;

impl LvmBackend {
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

    /// Every volume group.
    pub(super) fn report_vgs(&self) -> Result<Vec<VolumeGroup>, BackendError> {
        parse_vgs(&self.report("vgs", VG_FIELDS, &[])?).map_err(|e| unparsable("vgs", e))
    }

    /// Every (visible) LV of the volume group.
    pub(super) fn report_lvs(&self) -> Result<Vec<LogicalVolume>, BackendError> {
        parse_lvs(&self.report("lvs", LV_FIELDS, &[&self.volume_group])?)
            .map_err(|e| unparsable("lvs", e))
    }

    /// The LV named `name`, if it exists.
    pub(super) fn find_lv(lvs: &[LogicalVolume], name: &str) -> Option<LogicalVolume> {
        lvs.iter().find(|lv| lv.lv_name == name).cloned()
    }

    /// The LV `name` if it exists and dvol made it; an LV of that name without the dvol tags
    /// is refused rather than touched.
    pub(super) fn own_lv(
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

    /// The LV `name`, which dvol made; an error saying `action` when it is missing.
    pub(super) fn required_lv(
        &self,
        lvs: &[LogicalVolume],
        name: &str,
        action: &'static str,
    ) -> Result<LogicalVolume, BackendError> {
        self.own_lv(lvs, name)?
            .ok_or_else(|| self.missing_lv(action, name))
    }

    /// The error of `action` on the LV `name`, which is missing: it names the LV's device.
    pub(super) fn missing_lv(&self, action: &'static str, name: &str) -> BackendError {
        BackendError::io(
            action,
            &self.device_of(name),
            std::io::Error::from(ErrorKind::NotFound),
        )
    }

    /// Renames the LV `from` to `to`.
    pub(super) fn rename_lv(&self, from: &str, to: &str) -> Result<(), BackendError> {
        self.lvm.run(["lvrename", &self.volume_group, from, to])?;
        Ok(())
    }

    /// Removes the LV `lv`.
    pub(super) fn lvremove(&self, lv: &str) -> Result<(), BackendError> {
        self.lvm.run(["lvremove", "-y", &self.qualified(lv)])?;
        Ok(())
    }

    /// Activates the LV if it is inactive or its device node is missing (after a reboot
    /// without autoactivation); the node's path.
    pub(super) fn ensure_active(&self, lv: &LogicalVolume) -> Result<PathBuf, BackendError> {
        self.activate_if(&lv.lv_name, !lv.is_active())
    }

    /// Activates the LV `lv`, just made active, if its device node is missing; the node's
    /// path.
    pub(super) fn ensure_device(&self, lv: &str) -> Result<PathBuf, BackendError> {
        self.activate_if(lv, false)
    }

    /// Activates the LV `lv` if it is `inactive` or its device node is missing.
    fn activate_if(&self, lv: &str, inactive: bool) -> Result<PathBuf, BackendError> {
        let device = self.device_of(lv);
        if inactive || !device.exists() {
            self.lvm
                .run(["lvchange", "-ay", "-K", &self.qualified(lv)])?;
        }
        Ok(device)
    }
}
