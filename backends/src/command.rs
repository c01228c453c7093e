//! External tools (mkfs, resize2fs, lvm), found once by absolute path and run with errors that
//! carry the command line, the exit code and stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Directories searched for tools, in order. A fixed list rather than `$PATH`, so the daemon
/// runs the same binaries whatever environment it was started from.
pub const SEARCH_DIRS: &[&str] = &[
    "/usr/sbin",
    "/sbin",
    "/usr/bin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// Errors from external tools.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The tool is not installed.
    #[error("{name} not found in {dirs}; install it (Debian package: {package})", dirs = SEARCH_DIRS.join(":"))]
    NotFound {
        /// The tool's name.
        name: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The tool could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool ran and failed.
    #[error("{command} failed with exit code {code}: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code (-1 if killed by a signal).
        code: i32,
        /// Its stderr, trimmed.
        stderr: String,
    },
}

/// A tool found by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    path: PathBuf,
}

impl Tool {
    /// Finds `name` in [`SEARCH_DIRS`]; `package` names the Debian package for the error.
    pub fn find(name: &str, package: &'static str) -> Result<Tool, CommandError> {
        SEARCH_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
            .map(|path| Tool { path })
            .ok_or_else(|| CommandError::NotFound {
                name: name.to_string(),
                package,
            })
    }

    /// The tool's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the tool with `args`; returns stdout on success.
    pub fn run<I, S>(&self, args: I) -> Result<String, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let command = std::iter::once(self.path.as_os_str())
            .chain(args.iter().map(|a| a.as_os_str()))
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new(&self.path)
            .args(&args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| CommandError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(CommandError::Failed {
                command,
                code: output.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_by_absolute_path_and_reports_failures() {
        let sh = Tool::find("sh", "dash").unwrap();
        assert!(sh.path().is_absolute());
        assert_eq!(sh.run(["-c", "echo out"]).unwrap(), "out\n");
        let err = sh.run(["-c", "echo bad >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("sh -c echo bad >&2; exit 3 failed with exit code 3: bad"),
            "{msg}"
        );
    }

    #[test]
    fn missing_tool_names_its_package() {
        let err = Tool::find("no-such-tool-dvol", "dvol-test").unwrap_err();
        assert!(err
            .to_string()
            .contains("install it (Debian package: dvol-test)"));
    }
}
