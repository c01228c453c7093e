//! Volume history for dvol.
//!
//! This crate will hold the content-addressed object store (blake3 ids, zstd-compressed
//! chunks), commits, refs and the transfer streams that move volumes between hosts.
//! Nothing is implemented yet; the daemon answers `NAME@snapshot-REF` with a clear
//! "not yet supported" error until it is.
