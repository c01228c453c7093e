//! The loop backend (not built yet).
