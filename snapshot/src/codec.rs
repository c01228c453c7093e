//! The canonical binary encoding used by objects and the index: LEB128 varints, zig-zag
//! signed integers, length-prefixed byte strings and raw 32-byte ids.
//!
//! The encoding is deterministic (one value has exactly one encoding), which is what makes
//! object ids content hashes: equal trees and commits always encode, and so hash, the same.

use crate::id::ObjectId;

/// Errors from decoding a byte string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A value is out of range or malformed.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The input does not start with the expected magic bytes.
    #[error("not a {0} (wrong magic bytes)")]
    BadMagic(&'static str),
    /// Bytes were left over after the last value.
    #[error("{0} has trailing bytes")]
    Trailing(&'static str),
}

/// Appends canonical values to a byte vector.
#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends raw bytes (no length prefix).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends an unsigned LEB128 varint.
    pub fn uvar(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Appends a zig-zag encoded signed varint.
    pub fn ivar(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)) as u64);
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.uvar(b.len() as u64);
        self.raw(b);
    }

    /// Appends a 32-byte id.
    pub fn id(&mut self, id: &ObjectId) {
        self.raw(id.as_bytes());
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical values from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming it `what` in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }

    /// Checks and consumes the magic prefix.
    pub fn magic(&mut self, m: &[u8]) -> Result<(), DecodeError> {
        if self.buf.starts_with(m) {
            self.buf = &self.buf[m.len()..];
            Ok(())
        } else {
            Err(DecodeError::BadMagic(self.what))
        }
    }

    /// Consumes `n` raw bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.raw(1)?[0])
    }

    /// Reads an unsigned varint (rejecting non-canonical encodings).
    pub fn uvar(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::Invalid(self.what));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError::Invalid(self.what));
                }
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::Invalid(self.what));
            }
        }
    }

    /// Reads an unsigned varint that must fit in `u32`.
    pub fn u32var(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.uvar()?).map_err(|_| DecodeError::Invalid(self.what))
    }

    /// Reads a zig-zag signed varint.
    pub fn ivar(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvar()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Reads a length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.uvar()?).map_err(|_| DecodeError::Invalid(self.what))?;
        self.raw(n)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid(self.what))
    }

    /// Reads a 32-byte id.
    pub fn id(&mut self) -> Result<ObjectId, DecodeError> {
        let b = self.raw(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(ObjectId::from_bytes(a))
    }

    /// A count of items that each take at least `min_item` bytes, checked against the
    /// remaining input so corrupt counts cannot trigger huge allocations.
    pub fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.uvar()?).map_err(|_| DecodeError::Invalid(self.what))?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(DecodeError::Truncated(self.what));
        }
        Ok(n)
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Consumes and returns everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless all input was consumed.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let vals = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let ivals = [0i64, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000_000_000];
        let mut w = Writer::new();
        for v in vals {
            w.uvar(v);
        }
        for v in ivals {
            w.ivar(v);
        }
        w.bytes(b"abc");
        let buf = w.finish();
        let mut r = Reader::new(&buf, "test");
        for v in vals {
            assert_eq!(r.uvar().unwrap(), v);
        }
        for v in ivals {
            assert_eq!(r.ivar().unwrap(), v);
        }
        assert_eq!(r.bytes().unwrap(), b"abc");
        r.end().unwrap();
    }

    #[test]
    fn rejects_non_canonical_and_truncated() {
        assert!(Reader::new(&[0x80, 0x00], "t").uvar().is_err());
        assert!(Reader::new(&[0x80], "t").uvar().is_err());
        assert!(Reader::new(&[5, 1, 2], "t").bytes().is_err());
    }
}
