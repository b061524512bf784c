//! Cancellation and progress hooks threaded through long-running work. Checked between blocks, so an
//! abort stops native work within one block's time (milliseconds).

use crate::error::{Error, Result};

/// Hooks for a long operation. `Control::none()` ignores both.
#[derive(Clone, Copy)]
pub struct Control<'a> {
    abort: Option<&'a (dyn Fn() -> bool + Sync)>,
    progress: Option<&'a (dyn Fn(&str, usize, usize) + Sync)>,
}

impl<'a> Control<'a> {
    pub fn none() -> Self {
        Control { abort: None, progress: None }
    }

    /// `abort()` returns true once the caller wants the work stopped; `progress(phase, done, total)`
    /// is called after each block (the caller throttles delivery).
    pub fn new(abort: Option<&'a (dyn Fn() -> bool + Sync)>, progress: Option<&'a (dyn Fn(&str, usize, usize) + Sync)>) -> Self {
        Control { abort, progress }
    }

    /// `Err(ERR_ABORTED)` if an abort was requested.
    #[inline]
    pub fn check(&self) -> Result<()> {
        match self.abort {
            Some(f) if f() => Err(Error::aborted()),
            _ => Ok(()),
        }
    }

    /// The same abort hook with another progress callback (e.g. one that maps a sub-task's progress
    /// onto the whole operation's).
    pub fn with_progress<'b>(&'b self, progress: &'b (dyn Fn(&str, usize, usize) + Sync)) -> Control<'b> {
        Control { abort: self.abort, progress: Some(progress) }
    }

    #[inline]
    pub fn progress(&self, phase: &str, done: usize, total: usize) {
        if let Some(p) = self.progress {
            p(phase, done, total);
        }
    }
}
