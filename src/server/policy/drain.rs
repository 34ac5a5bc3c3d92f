//! The drain: the first SIGINT/SIGTERM stops accepting and reading, and sets one
//! deadline for flushing what is owed (see [`super::LoopState::woken`]).

use std::time::{Duration, Instant};

/// The drain deadline: unset while serving, set by the first stop signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drain {
    /// When the drain gives up and closes what is left; None while serving.
    pub deadline: Option<Instant>,
}

impl Drain {
    /// Start draining (once). True when this call started it.
    pub fn begin(&mut self, timeout: Duration) -> bool {
        if self.deadline.is_some() {
            return false;
        }
        self.deadline = Some(Instant::now() + timeout);
        true
    }

    /// A stop signal came: no more accepting or reading.
    pub fn draining(&self) -> bool {
        self.deadline.is_some()
    }

    /// The drain deadline has passed: close every connection, flushed or not.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
