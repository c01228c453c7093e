//! Typed identifiers: object ids (blake3), commit ids and volume keys.

use std::fmt;
use std::str::FromStr;

/// Errors from parsing identifiers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The text is not a full 64-digit hexadecimal object id.
    #[error("'{0}' is not an object id: expected 64 hexadecimal digits")]
    NotAnId(String),
    /// The text is not a hexadecimal prefix of at least the minimum length.
    #[error("'{0}' is not a commit id prefix: expected at least {min} hexadecimal digits", min = ObjectId::MIN_PREFIX)]
    BadPrefix(String),
    /// The text is not a UUID.
    #[error("'{0}' is not a volume key: expected a UUID")]
    NotAUuid(String),
}

/// The id of an object in the store: the blake3 hash of its uncompressed content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The shortest prefix accepted by [`ObjectId::parse_prefix`].
    pub const MIN_PREFIX: usize = 4;

    /// Hashes `data` and returns its id.
    pub fn hash(data: &[u8]) -> ObjectId {
        ObjectId(*blake3::hash(data).as_bytes())
    }

    /// Builds an id from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> ObjectId {
        ObjectId(bytes)
    }

    /// The 32 raw bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as 64 lower-case hexadecimal digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The first `n` hexadecimal digits of the id (for display).
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(n.min(64));
        s
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(s: &str) -> Result<ObjectId, IdError> {
        if s.len() != 64 {
            return Err(IdError::NotAnId(s.to_string()));
        }
        let mut out = [0u8; 32];
        let b = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_val(b[2 * i]).ok_or_else(|| IdError::NotAnId(s.to_string()))?;
            let lo = hex_val(b[2 * i + 1]).ok_or_else(|| IdError::NotAnId(s.to_string()))?;
            *o = (hi << 4) | lo;
        }
        Ok(ObjectId(out))
    }

    /// Validates a hexadecimal prefix of at least [`ObjectId::MIN_PREFIX`] digits and returns
    /// it in lower case.
    pub fn parse_prefix(s: &str) -> Result<IdPrefix, IdError> {
        if s.len() < Self::MIN_PREFIX || s.len() > 64 || !s.bytes().all(|c| hex_val(c).is_some()) {
            return Err(IdError::BadPrefix(s.to_string()));
        }
        Ok(IdPrefix(s.to_ascii_lowercase()))
    }
}

/// A validated, lower-case hexadecimal prefix of an object id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPrefix(String);

impl IdPrefix {
    /// The prefix digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &ObjectId) -> bool {
        id.to_hex().starts_with(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short(16))
    }
}

impl FromStr for ObjectId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectId::from_hex(s)
    }
}

/// The id of a commit object (an [`ObjectId`] known to name a commit).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub ObjectId);

impl CommitId {
    /// The underlying object id.
    pub fn object(&self) -> ObjectId {
        self.0
    }

    /// The first `n` hexadecimal digits (for display).
    pub fn short(&self, n: usize) -> String {
        self.0.short(n)
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", self.0.short(16))
    }
}

impl FromStr for CommitId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectId::from_hex(s).map(CommitId)
    }
}

impl From<CommitId> for ObjectId {
    fn from(c: CommitId) -> ObjectId {
        c.0
    }
}

/// Identifies a volume in the repository (the daemon uses the volume's UUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VolumeKey(pub uuid::Uuid);

impl VolumeKey {
    /// A fresh random key (tests and tools).
    pub fn new_random() -> VolumeKey {
        VolumeKey(uuid::Uuid::new_v4())
    }

    /// The hyphenated lower-case form used in paths.
    pub fn as_path_component(&self) -> String {
        self.0.as_hyphenated().to_string()
    }
}

impl fmt::Display for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.as_hyphenated(), f)
    }
}

impl FromStr for VolumeKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(VolumeKey)
            .map_err(|_| IdError::NotAUuid(s.to_string()))
    }
}

impl From<uuid::Uuid> for VolumeKey {
    fn from(u: uuid::Uuid) -> VolumeKey {
        VolumeKey(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_prefix() {
        let id = ObjectId::hash(b"hello");
        let hex = id.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(ObjectId::from_hex(&hex).unwrap(), id);
        assert_eq!(ObjectId::from_hex(&hex.to_uppercase()).unwrap(), id);
        assert!(ObjectId::from_hex(&hex[..63]).is_err());
        assert!(ObjectId::from_hex(&format!("{}g", &hex[..63])).is_err());
        let p = ObjectId::parse_prefix(&hex[..6].to_uppercase()).unwrap();
        assert!(p.matches(&id));
        assert!(
            !p.matches(&ObjectId::hash(b"other"))
                || hex[..6] == ObjectId::hash(b"other").to_hex()[..6]
        );
        assert!(ObjectId::parse_prefix("abc").is_err());
        assert!(ObjectId::parse_prefix("abcz").is_err());
    }

    #[test]
    fn volume_key_parse() {
        let k = VolumeKey::new_random();
        assert_eq!(k.to_string().parse::<VolumeKey>().unwrap(), k);
        assert!("nope".parse::<VolumeKey>().is_err());
    }
}
