//! Limits on every backend.
