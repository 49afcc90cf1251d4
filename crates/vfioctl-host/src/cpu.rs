//! CPU topology reader (in progress).
