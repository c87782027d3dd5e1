//! Being written: see the trainer issue.
