//! Volume names as Docker hands them to the plugin.
//!
//! `NAME`, `NAME@PROFILE` and `NAME@snapshot-REF`, exactly as the user typed them. A name is
//! checked here before it can reach a path, a database key or a message.

use std::fmt;

/// The longest volume or profile name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The grammar, for error messages.
pub const NAME_RULE: &str =
    "a letter or digit followed by letters, digits, '_', '.' or '-', at most 64 characters";

/// A validated volume name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

/// A validated profile name; same grammar as volume names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

/// What follows the `@` in a volume reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suffix {
    /// Plain `NAME`.
    None,
    /// `NAME@PROFILE`: create with (or check against) this profile.
    Profile(ProfileName),
    /// `NAME@snapshot-REF`: clone a new volume from a volume or commit id prefix.
    Snapshot(String),
}

/// A parsed volume reference: a name and what its suffix asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef {
    /// The volume's own name, without suffix.
    pub name: VolumeName,
    /// The suffix after `@`.
    pub suffix: Suffix,
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name breaks the grammar.
    #[error("invalid {what} name {shown}: {reason}; use {rule}", rule = NAME_RULE)]
    Invalid {
        /// "volume" or "profile".
        what: &'static str,
        /// The name, quoted and shortened for display.
        shown: String,
        /// What exactly is wrong.
        reason: String,
    },
    /// A snapshot reference too short or not hexadecimal.
    #[error("invalid snapshot reference {shown}: use NAME@snapshot-REF where REF is at least 6 hex digits of a volume UUID or commit id")]
    BadSnapshotRef {
        /// The reference, quoted and shortened for display.
        shown: String,
    },
}

/// Quotes a name for a message, shortened and with control characters escaped, so a hostile
/// name cannot flood a log line or fake one.
fn shown(input: &str) -> String {
    let mut out: String = input.chars().take(MAX_NAME_LEN + 8).collect();
    if out.len() < input.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn check(what: &'static str, input: &str) -> Result<(), NameError> {
    let invalid = |reason: String| NameError::Invalid {
        what,
        shown: shown(input),
        reason,
    };
    let Some(first) = input.chars().next() else {
        return Err(invalid("it is empty".into()));
    };
    if input.len() > MAX_NAME_LEN {
        return Err(invalid(format!("it is {} characters long", input.len())));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(invalid(format!("it starts with {first:?}")));
    }
    if let Some(bad) = input
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(format!("it contains {bad:?}")));
    }
    Ok(())
}

impl VolumeName {
    /// Checks `input` against the name grammar.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check("volume", input)?;
        Ok(VolumeName(input.to_string()))
    }

    /// The name as a string; safe to use as a path component.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ProfileName {
    /// Checks `input` against the name grammar.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check("profile", input)?;
        Ok(ProfileName(input.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl VolumeRef {
    /// Parses `NAME`, `NAME@PROFILE` or `NAME@snapshot-REF`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let (name, suffix) = match input.split_once('@') {
            None => (input, Suffix::None),
            Some((name, rest)) => (name, Self::parse_suffix(rest)?),
        };
        Ok(VolumeRef {
            name: VolumeName::parse(name)?,
            suffix,
        })
    }

    fn parse_suffix(rest: &str) -> Result<Suffix, NameError> {
        if let Some(reference) = rest.strip_prefix("snapshot-") {
            if reference.len() < 6
                || reference.len() > 64
                || !reference.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            {
                return Err(NameError::BadSnapshotRef { shown: shown(rest) });
            }
            return Ok(Suffix::Snapshot(reference.to_ascii_lowercase()));
        }
        Ok(Suffix::Profile(ProfileName::parse(rest)?))
    }

    /// The profile the suffix names, if it names one.
    pub fn profile(&self) -> Option<&ProfileName> {
        match &self.suffix {
            Suffix::Profile(profile) => Some(profile),
            _ => None,
        }
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        for ok in ["a", "orders", "Orders_2.v-1", "0abc", &"x".repeat(64)] {
            assert_eq!(VolumeName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_path_tricks_and_control_characters() {
        let long = "y".repeat(300);
        for bad in [
            "", "..", ".", "../etc", "a/b", "/abs", "a\0b", "-rf", "_x", "a b", "é", "a\nb", &long,
        ] {
            let err = VolumeName::parse(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("at most 64 characters"), "{msg}");
            assert!(!msg.contains('\0') && !msg.contains('\n'), "{msg:?}");
        }
        let msg = VolumeName::parse(&long).unwrap_err().to_string();
        assert!(msg.contains("300 characters long"), "{msg}");
        assert!(
            msg.len() < 300,
            "message should not echo the whole name: {msg}"
        );
    }

    #[test]
    fn parses_suffixes() {
        let plain = VolumeRef::parse("orders").unwrap();
        assert_eq!(plain.suffix, Suffix::None);
        let gold = VolumeRef::parse("orders@gold").unwrap();
        assert_eq!(gold.name.as_str(), "orders");
        assert_eq!(gold.profile().unwrap().as_str(), "gold");
        let snap = VolumeRef::parse("copy@snapshot-DEADbeef").unwrap();
        assert_eq!(snap.suffix, Suffix::Snapshot("deadbeef".into()));
    }

    #[test]
    fn refuses_bad_suffixes() {
        for bad in [
            "a@",
            "a@b@c",
            "a@../x",
            "@gold",
            "a@snapshot-abc",
            "a@snapshot-xyz123",
        ] {
            assert!(VolumeRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
