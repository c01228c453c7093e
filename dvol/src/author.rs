//! Who commits when `--author` is not given: `$USER@hostname`, the user's name taken from
//! `/etc/passwd` when `$USER` and `$LOGNAME` are unset.

/// `$USER@hostname` (or `$LOGNAME`, or the effective user's name in `/etc/passwd`, else
/// `unknown`; the host from `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
pub fn default_author() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The effective user's name from /etc/passwd, for when $USER and $LOGNAME are unset.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_string())
    })
}
