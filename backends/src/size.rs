//! Volume sizes as users write them.
//!
//! `10G`, `10GiB`, `10GB`, `512M`, `1.5T` and plain byte counts are accepted, exactly as
//! written: no spaces, signs, underscores or exponents. Units are binary, as in LVM and
//! `truncate`: `1G` is 2^30 bytes.

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
        "invalid size {input:?}: write a positive number of digits with an optional fraction and binary unit, and nothing else (no spaces, signs, underscores or exponents): 512M, 10G, 1.5T, 10GiB, or a byte count such as 1073741824"
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

    /// Parses `DIGITS[.DIGITS][UNIT]` exactly: no spaces, signs, underscores, exponents or
    /// other characters. `UNIT` is `B` or one of `K`, `M`, `G`, `T`, `P`, `E` (any case),
    /// optionally followed by `B` or `iB`; all units are binary. The result must be a whole
    /// number of bytes.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let malformed = || SizeError::Malformed {
            input: input.to_string(),
        };
        let too_large = || SizeError::TooLarge {
            input: input.to_string(),
            max: Self::MAX,
        };
        let number_end = input
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(input.len());
        let (number, unit) = input.split_at(number_end);
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
            return Err(malformed());
        }
        let multiplier = unit_multiplier(unit).ok_or_else(malformed)?;
        // Exact arithmetic: value = (whole + fraction / 10^len) * multiplier.
        let digits = format!("{whole}{}", fraction.unwrap_or(""));
        let scale = 10u128
            .checked_pow(fraction.map_or(0, str::len) as u32)
            .ok_or_else(malformed)?;
        let mantissa = digits.bytes().try_fold(0u128, |acc, d| {
            acc.checked_mul(10)?.checked_add(u128::from(d - b'0'))
        });
        let scaled = mantissa
            .and_then(|m| m.checked_mul(multiplier))
            .ok_or_else(too_large)?;
        if scaled % scale != 0 {
            return Err(malformed());
        }
        let bytes = u64::try_from(scaled / scale).map_err(|_| too_large())?;
        Self::checked(bytes, input)
    }
}

/// The byte multiplier of a size's unit: empty or `B` for bytes, `K` to `E` (any case), the
/// letter alone or followed by `B` or `iB`. `None` for anything else.
fn unit_multiplier(unit: &str) -> Option<u128> {
    const PREFIXES: [char; 6] = ['k', 'm', 'g', 't', 'p', 'e'];
    let unit = unit.to_ascii_lowercase();
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    let mut chars = unit.chars();
    let prefix = chars.next()?;
    let power = PREFIXES.iter().position(|p| *p == prefix)? as u32 + 1;
    match chars.as_str() {
        "" | "b" | "ib" => Some(1u128 << (10 * power)),
        _ => None,
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
        assert_eq!("1073741824".parse::<ByteSize>().unwrap().bytes(), 1 << 30);
        assert_eq!("2T".parse::<ByteSize>().unwrap().bytes(), 2 << 40);
        assert_eq!("1.5T".parse::<ByteSize>().unwrap().bytes(), 3 << 39);
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("64MB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("10g".parse::<ByteSize>().unwrap().bytes(), 10 << 30);
        assert_eq!("2048K".parse::<ByteSize>().unwrap().bytes(), 2 << 20);
        assert_eq!("1048576B".parse::<ByteSize>().unwrap().bytes(), 1 << 20);
        assert_eq!("1P".parse::<ByteSize>().unwrap().bytes(), 1 << 50);
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
    fn refuses_loose_spellings_naming_the_accepted_forms() {
        for bad in [
            "1_000M",
            "16.M",
            ".5G",
            "10 M",
            "1e3",
            "1E3",
            " 1G",
            "1G ",
            "+1G",
            "0x10M",
            "1,5G",
            "1.5",
            "1GiBB",
            "1Gi",
            "1iB",
            "10\nG",
            "１G",
            "1.0000001M",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(matches!(err, SizeError::Malformed { .. }), "{bad:?}: {err}");
            let message = err.to_string();
            for form in ["512M", "10G", "1.5T", "10GiB", "1073741824"] {
                assert!(message.contains(form), "{bad:?}: {message}");
            }
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
