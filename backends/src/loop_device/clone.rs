//! Clones of loop volumes: a reflinked copy of the source's image, taken with the source's
//! filesystem frozen, given a filesystem identity of its own, and renamed into place like a
//! new image. Only where the root's filesystem shares blocks and the two volumes agree on
//! filesystem and size; elsewhere the caller copies the files.

use std::fs;
use std::path::Path;

use super::attachment::Attached;
use super::image::open_image;
use super::LoopBackend;
use crate::{BackendError, Effect, Filesystem, VolumeSpec};

impl LoopBackend {
    /// Makes volume `target` a reflinked copy of volume `source` (mounted at
    /// `source_mountpoint`, if it is). `Ok(None)` when blocks cannot be shared here.
    pub(super) fn reflink_clone(
        &self,
        source: &VolumeSpec,
        source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        if self.image_path(target.id).exists() {
            return Ok(Some(Effect::Unchanged));
        }
        if target.preallocate
            || source.filesystem != target.filesystem
            || source.size != target.size
        {
            return Ok(None);
        }
        self.discard_temp(target.id)?;
        let temp = self.temp_path(target.id);
        // The copy shares every block now, and may need its whole size as it is rewritten.
        let space = self.hold_space();
        if let Some(size) = target.size {
            self.check_promise(
                size.bytes(),
                false,
                target.max_overprovision,
                &format!("a {size} copy of volume {}", source.id),
            )?;
        }
        if !self.reflink_frozen(source.id, source_mountpoint, &temp)? {
            return Ok(None);
        }
        drop(space);
        let fs = target.filesystem.unwrap_or(Filesystem::Ext4);
        let renamed = open_image(&temp).and_then(|file| {
            let scratch = self.clone_scratch(target.id);
            fs::create_dir_all(&scratch)
                .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
            let attached = Attached::new(&file, &temp)?;
            let renamed = self.tools.new_identity(fs, &attached.path, &scratch);
            attached.detach()?;
            let _ = fs::remove_dir(&scratch);
            renamed
        });
        if let Err(e) = renamed {
            self.discard_temp(target.id)?;
            return Err(e);
        }
        self.install_temp(target.id)?;
        Ok(Some(Effect::Changed))
    }
}
