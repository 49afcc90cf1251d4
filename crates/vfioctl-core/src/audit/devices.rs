//! Audit checks: devices.

use super::{Cx, Finding, Severity};

/// (id, severity, title) of every finding this area makes.
pub const IDS: &[(&str, Severity, &str)] = &[];

pub(super) fn check(_cx: &Cx<'_>, _out: &mut Vec<Finding>) {}
