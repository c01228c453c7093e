//! Volume sizes as users write them.
//!
//! `10G`, `10GiB`, `512M`, `1.5T` and plain byte counts are accepted. Units are binary, as in
//! LVM and `truncate`: `1G` is 2^30 bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A volume size in bytes, between [`ByteSize::MIN`] and [`ByteSize::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a size at all.
    #[error(
        "invalid size {input:?}: write a positive number with an optional unit, e.g. 512M, 10G, 1T"
    )]
    Malformed {
        /// What the user wrote.
        input: String,
    },
    /// Smaller than any volume can be.
    #[error("invalid size {input:?}: a volume needs at least {min}")]
    TooSmall {
        /// What the user wrote.
        input: String,
        /// The smallest size accepted.
        min: ByteSize,
    },
    /// Larger than any volume dvol will make.
    #[error("invalid size {input:?}: the largest volume dvol makes is {max}")]
    TooLarge {
        /// What the user wrote.
        input: String,
        /// The largest size accepted.
        max: ByteSize,
    },
}

impl ByteSize {
    /// The smallest size dvol accepts for any volume (1 MiB).
    pub const MIN: ByteSize = ByteSize(1 << 20);
    /// The largest size dvol accepts for any volume (1 PiB).
    pub const MAX: ByteSize = ByteSize(1 << 50);

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A size from a byte count, checked against the limits.
    pub fn from_bytes(bytes: u64) -> Result<Self, SizeError> {
        Self::checked(bytes, &bytes.to_string())
    }

    fn checked(bytes: u64, input: &str) -> Result<Self, SizeError> {
        if bytes < Self::MIN.0 {
            return Err(SizeError::TooSmall {
                input: input.to_string(),
                min: Self::MIN,
            });
        }
        if bytes > Self::MAX.0 {
            return Err(SizeError::TooLarge {
                input: input.to_string(),
                max: Self::MAX,
            });
        }
        Ok(ByteSize(bytes))
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let malformed = || SizeError::Malformed {
            input: input.to_string(),
        };
        if trimmed.is_empty() || trimmed.starts_with(['-', '+']) {
            return Err(malformed());
        }
        let parser = parse_size::Config::new().with_binary();
        match parser.parse_size(trimmed) {
            Ok(bytes) => Self::checked(bytes, input),
            Err(parse_size::Error::PosOverflow) => Err(SizeError::TooLarge {
                input: input.to_string(),
                max: Self::MAX,
            }),
            Err(_) => Err(malformed()),
        }
    }
}

impl fmt::Display for ByteSize {
    /// Prints the size in the largest binary unit that divides it to one decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if value.fract() == 0.0 {
            write!(f, "{value:.0}{}", UNITS[unit])
        } else {
            write!(f, "{value:.1}{}", UNITS[unit])
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    /// Accepts a size string (`"10G"`) or a byte count.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Raw::Bytes(bytes) => ByteSize::from_bytes(bytes).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_spellings_in_binary_units() {
        assert_eq!("10G".parse::<ByteSize>().unwrap().bytes(), 10 << 30);
        assert_eq!("10GiB".parse::<ByteSize>().unwrap().bytes(), 10 << 30);
        assert_eq!("512M".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
        assert_eq!("1.5G".parse::<ByteSize>().unwrap().bytes(), 3 << 29);
        assert_eq!("1048576".parse::<ByteSize>().unwrap().bytes(), 1 << 20);
        assert_eq!(" 2T ".parse::<ByteSize>().unwrap().bytes(), 2 << 40);
    }

    #[test]
    fn refuses_negative_empty_and_garbage() {
        for bad in ["-1", "", "  ", "abc", "10Q", "+5G", "1..5G", "G"] {
            assert!(
                matches!(bad.parse::<ByteSize>(), Err(SizeError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
    }

    #[test]
    fn refuses_absurd_sizes_with_the_limit_in_the_message() {
        let err = "1E".parse::<ByteSize>().unwrap_err();
        assert!(matches!(err, SizeError::TooLarge { .. }));
        assert!(err.to_string().contains("1PiB"), "{err}");
        assert!(matches!(
            "99999999999999999999999G".parse::<ByteSize>(),
            Err(SizeError::TooLarge { .. })
        ));
        assert!(matches!(
            "1K".parse::<ByteSize>(),
            Err(SizeError::TooSmall { .. })
        ));
        assert!(matches!(
            "0".parse::<ByteSize>(),
            Err(SizeError::TooSmall { .. })
        ));
    }

    #[test]
    fn displays_in_binary_units() {
        assert_eq!(ByteSize(10 << 30).to_string(), "10GiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5GiB");
        assert_eq!(ByteSize::MAX.to_string(), "1PiB");
    }
}
