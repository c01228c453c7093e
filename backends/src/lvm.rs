//! The LVM thin backend (not built yet).
