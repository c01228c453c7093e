//! The current volume: the one history commands work on when no `-V NAME` is given.
//!
//! It is kept per user in `$DVOL_CONFIG_DIR/current`, else `$XDG_CONFIG_HOME/dvol/current`,
//! else `~/.config/dvol/current`: one line, the volume's name. It is written atomically
//! (a temporary file in the same directory, then a rename), so a reader never sees half a name.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The directory holding dvol's per-user settings.
pub fn config_dir() -> Result<PathBuf> {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("DVOL_CONFIG_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = non_empty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("dvol"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".config").join("dvol"));
    }
    bail!("cannot tell where to keep the current volume: set DVOL_CONFIG_DIR, XDG_CONFIG_HOME or HOME")
}

fn current_file() -> Result<PathBuf> {
    Ok(config_dir()?.join("current"))
}

/// The current volume, if one is set.
pub fn read() -> Result<Option<String>> {
    let path = current_file()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let name = text.trim();
            Ok((!name.is_empty()).then(|| name.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("read the current volume from {}", path.display()))
        }
    }
}

/// Makes `name` the current volume.
pub fn write(name: &str) -> Result<()> {
    let path = current_file()?;
    let dir = path.parent().expect("the file is in a directory");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create {} for the current volume", dir.display()))?;
    let temp = dir.join(format!(".current.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(format!("{name}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("write the current volume to {}", path.display()));
    }
    Ok(())
}

/// Forgets the current volume if it is `name`; returns whether it was.
pub fn clear_if(name: &str) -> Result<bool> {
    if read()?.as_deref() != Some(name) {
        return Ok(false);
    }
    let path = current_file()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("remove {}", path.display())),
    }
}

/// The volume a command works on: `-V NAME` if given, else the current volume.
pub fn resolve(volume: Option<&str>) -> Result<String> {
    if let Some(name) = volume {
        return Ok(name.to_string());
    }
    match read()? {
        Some(name) => Ok(name),
        None => bail!(
            "no current volume: run `dvol switch NAME` (or `dvol init NAME` for a new one), or pass -V NAME"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_the_config_dir() {
        let dir = tempfile_dir();
        // Tests in this module are the only ones touching DVOL_CONFIG_DIR in this process.
        std::env::set_var("DVOL_CONFIG_DIR", &dir);
        assert_eq!(read().unwrap(), None);
        assert!(resolve(None)
            .unwrap_err()
            .to_string()
            .contains("dvol switch NAME"));
        assert_eq!(resolve(Some("x")).unwrap(), "x");
        write("demo").unwrap();
        assert_eq!(read().unwrap().as_deref(), Some("demo"));
        assert_eq!(resolve(None).unwrap(), "demo");
        assert!(!clear_if("other").unwrap());
        assert!(clear_if("demo").unwrap());
        assert_eq!(read().unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "no temporary files left: {leftovers:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dvol-current-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
