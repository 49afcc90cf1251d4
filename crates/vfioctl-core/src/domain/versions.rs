//! The libvirt and QEMU releases that decide what vfioctl writes into a domain: one
//! named threshold per feature, and the Hyper-V table, so the renderer, the patcher, the
//! audit, `apply --evdev` and the KubeVirt export all draw the line at the same release.
//!
//! A version is `(major, minor)`, as `libvirtd --version` and `qemu-system-x86_64
//! --version` print it (the micro part never decides anything here). An unknown version
//! counts as the newest: vfioctl writes the modern form, which is what a host without
//! `--version` output most likely runs; the callers that need a known old version to
//! warn ask for it explicitly ([`known_before`]).

/// A `(major, minor)` release of libvirt or QEMU.
pub type Version = (u32, u32);

/// libvirt 6.1 added the `dies` attribute of `<cpu><topology>`; older releases reject it.
pub const LIBVIRT_TOPOLOGY_DIES: Version = (6, 1);

/// libvirt 7.4 added `<input type='evdev'>`, which sets the device up for QEMU itself
/// (device cgroup, ownership); before it, evdev goes through QEMU's `input-linux` objects
/// on `<qemu:commandline>`, with the paths in qemu.conf's `cgroup_device_acl`.
pub const LIBVIRT_EVDEV_INPUT: Version = (7, 4);

/// libvirt 8.0 added the `mode` attribute of `<features><hyperv>` (`custom`, the old
/// behaviour, or `passthrough`); before it, custom was the only mode and the attribute is
/// refused.
pub const LIBVIRT_HYPERV_MODE: Version = (8, 0);

/// One Hyper-V enlightenment: its `<hyperv>` element name and the first libvirt and QEMU
/// releases that support it. Dependencies come first (see
/// [`super::hyperv::REQUIRES`]): synic after vpindex, stimer after synic.
pub const HYPERV: &[(&str, Version, Version)] = &[
    // libvirt 1.0 / QEMU 1.1: the first enlightenment, relaxed timing.
    ("relaxed", (1, 0), (1, 1)),
    // libvirt 1.1 / QEMU 1.1: the virtual APIC and the spinlock hint.
    ("vapic", (1, 1), (1, 1)),
    ("spinlocks", (1, 1), (1, 1)),
    // libvirt 1.3 / QEMU 2.5-2.6: VP index, runtime, SynIC, reset, vendor id.
    ("vpindex", (1, 3), (2, 5)),
    ("runtime", (1, 3), (2, 5)),
    ("synic", (1, 3), (2, 6)),
    // stimer as written here, with <direct>: libvirt 5.7 and QEMU 4.1.
    ("stimer", (5, 7), (4, 1)),
    ("reset", (1, 3), (2, 5)),
    ("vendor_id", (1, 3), (2, 5)),
    // libvirt 4.7 / QEMU 2.12-3.0: frequencies, reenlightenment, TLB flush.
    ("frequencies", (4, 7), (2, 12)),
    ("reenlightenment", (4, 7), (3, 0)),
    ("tlbflush", (4, 7), (3, 0)),
    // libvirt 4.10 / QEMU 3.1: paravirtual IPIs.
    ("ipi", (4, 10), (3, 1)),
];

/// Whether `have` is `since` or later; an unknown version counts as the newest.
pub fn at_least(have: Option<Version>, since: Version) -> bool {
    have.is_none_or(|v| v >= since)
}

/// Whether `have` is known and older than `since`: the cases that deserve a warning.
pub fn known_before(have: Option<Version>, since: Version) -> bool {
    have.is_some_and(|v| v < since)
}

/// A version as people write it, `7.4`.
pub fn release(v: Version) -> String {
    format!("{}.{}", v.0, v.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_newest_and_thresholds_are_inclusive() {
        assert!(at_least(None, LIBVIRT_EVDEV_INPUT) && !known_before(None, LIBVIRT_EVDEV_INPUT));
        assert!(at_least(Some((7, 4)), LIBVIRT_EVDEV_INPUT) && !at_least(Some((7, 3)), LIBVIRT_EVDEV_INPUT));
        assert!(known_before(Some((6, 10)), LIBVIRT_EVDEV_INPUT) && at_least(Some((10, 0)), LIBVIRT_HYPERV_MODE));
    }
}
