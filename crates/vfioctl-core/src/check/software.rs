//! The software a passthrough guest needs: OVMF firmware, QEMU, libvirt and its daemon.

use super::{Check, Facts, Program, Rule, Status, SNAPSHOT};

pub const OVMF: Rule =
    Rule { id: "firmware.ovmf", area: "FW", title: "OVMF (UEFI) firmware for guests", level: Status::Fail };
pub const QEMU_INSTALLED: Rule =
    Rule { id: "qemu.installed", area: "QEMU", title: "QEMU is installed", level: Status::Fail };
pub const LIBVIRT_INSTALLED: Rule =
    Rule { id: "libvirt.installed", area: "LIBVIRT", title: "libvirt is installed", level: Status::Fail };
pub const LIBVIRT_REACHABLE: Rule =
    Rule { id: "libvirt.reachable", area: "LIBVIRT", title: "libvirtd is reachable", level: Status::Warn };

pub(super) fn run(f: &Facts, out: &mut Vec<Check>) {
    out.push(ovmf(f));
    out.push(program(
        f,
        &QEMU_INSTALLED,
        "QEMU",
        &f.qemu,
        "install it: apt install qemu-system-x86 (Debian, Ubuntu) · dnf install qemu-kvm (Fedora) · pacman -S qemu-base (Arch)",
    ));
    out.push(program(
        f,
        &LIBVIRT_INSTALLED,
        "libvirt",
        &f.libvirt,
        "install it: apt install libvirt-daemon-system (Debian, Ubuntu) · dnf install libvirt (Fedora) · pacman -S libvirt (Arch)",
    ));
    if f.libvirt.is_some() {
        out.push(libvirt_reachable(f));
    }
}

fn ovmf(f: &Facts) -> Check {
    if f.ovmf.is_empty() {
        OVMF.unmet(
            "no OVMF firmware found: GPU passthrough needs a UEFI guest",
            "install it: apt install ovmf (Debian, Ubuntu) · dnf install edk2-ovmf (Fedora) · pacman -S edk2-ovmf (Arch)",
        )
    } else {
        OVMF.pass(f.ovmf.join(", "))
    }
}

/// A program found (with its version) or not (with how to install it).
fn program(f: &Facts, rule: &Rule, what: &str, p: &Option<Program>, install: &str) -> Check {
    match p {
        None => rule.unmet(format!("{what} not found"), install),
        Some(p) => rule.pass(match (&p.version, f.live) {
            (Some(v), _) => format!("{} ({v})", p.path),
            (None, true) => format!("{} (version unknown)", p.path),
            (None, false) => format!("{} (version {SNAPSHOT})", p.path),
        }),
    }
}

fn libvirt_reachable(f: &Facts) -> Check {
    match f.libvirt_reachable {
        None => LIBVIRT_REACHABLE.note(SNAPSHOT),
        Some(true) => LIBVIRT_REACHABLE.pass(""),
        Some(false) => LIBVIRT_REACHABLE.unmet(
            "nothing answers on /run/libvirt/libvirt-sock or /run/libvirt/virtqemud-sock",
            "start it: systemctl enable --now libvirtd (or virtqemud.socket on modular libvirt)",
        ),
    }
}
