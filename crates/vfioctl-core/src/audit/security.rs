//! Security: what qemu.conf gives every guest's QEMU (root, root's capabilities), and the
//! narrower way to what the guides wanted root for (evdev).

use super::{Area, Cx, Finding, Rule, Severity};
use crate::domain::evdev_input;
use crate::domain::versions::{self, release, LIBVIRT_EVDEV_INPUT};
// The file the findings are about.
use crate::edit::qemu_conf::PATH as QEMU_CONF;
use crate::edit::qemu_conf::{number_setting, string_setting};

const AREA: Area = Area::Security;

pub const QEMU_ROOT: Rule =
    Rule { id: "security-qemu-root", severity: Severity::Warning, area: AREA, title: "qemu.conf runs QEMU as root" };
pub const CAPABILITIES_KEPT: Rule = Rule {
    id: "security-capabilities-kept",
    severity: Severity::Warning,
    area: AREA,
    title: "qemu.conf keeps QEMU's capabilities (clear_emulator_capabilities = 0)",
};

/// `root`, `+0` or `0`: libvirt's ways to say uid 0.
fn is_root(user: &str) -> bool {
    matches!(user, "root" | "+0" | "0")
}

/// Whether evdev is all the domain shows a need for root for: it hands evdev devices
/// over, and its `<qemu:commandline>` holds nothing but the input-linux objects.
fn only_evdev(cx: &Cx<'_>) -> bool {
    if cx.evdev.is_empty() {
        return false;
    }
    cx.root.child("qemu:commandline").is_none_or(|cl| {
        cl.elements().all(|e| {
            e.name == "qemu:arg" && e.attr("value").is_some_and(|v| v == "-object" || v.starts_with("input-linux"))
        })
    })
}

pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(conf) = cx.host.qemu_conf.filter(|c| !c.trim().is_empty()) else { return };
    if let Some(user) = string_setting(conf, "user").filter(|u| is_root(u)) {
        let group_root = string_setting(conf, "group").is_some_and(|g| is_root(&g));
        let drop = if group_root {
            format!("remove user = \"{user}\" and group = \"root\" from {QEMU_CONF}")
        } else {
            format!("remove user = \"{user}\" from {QEMU_CONF}")
        };
        let restart =
            "systemctl restart libvirtd   # (virtqemud on modular daemons); the guests restart as their own user";
        let native_now = cx.evdev.iter().all(|e| e.native);
        let (message, fix) = if only_evdev(cx) {
            let message =
                format!("qemu.conf runs QEMU as root (user = \"{user}\"); the only reason this domain shows is evdev");
            let fix = match cx.host.libvirt {
                _ if native_now => format!("native <input type='evdev'> needs no root: libvirt grants QEMU the device itself.\n{drop}\n{restart}"),
                v if versions::known_before(v, LIBVIRT_EVDEV_INPUT) => format!(
                    "keep the evdev paths in cgroup_device_acl and let the unprivileged QEMU user read them:\nusermod -aG input libvirt-qemu   # the user is qemu on Fedora and Arch\n# AppArmor hosts (Ubuntu) also need /dev/input/* rw in /etc/apparmor.d/abstractions/libvirt-qemu\n{drop}\n{restart}"
                ),
                Some(_) => format!(
                    "hand the devices over natively (libvirt {} and later grants QEMU the device itself) instead of qemu:commandline:\n{}\nthen {drop}\n{restart}",
                    release(LIBVIRT_EVDEV_INPUT),
                    evdev_input("/dev/input/by-id/…-event-kbd").pretty()
                ),
                None => format!(
                    "libvirt {} and later: native {} instead of qemu:commandline; older libvirt: keep cgroup_device_acl and run usermod -aG input libvirt-qemu. Then {drop}\n{restart}",
                    release(LIBVIRT_EVDEV_INPUT),
                    evdev_input("…").to_xml()
                ),
            };
            (message, fix)
        } else {
            (
                format!("qemu.conf runs QEMU as root (user = \"{user}\")"),
                format!("{drop}, and give what the guest needs (disk images, audio socket) to libvirt's unprivileged QEMU user\n{restart}"),
            )
        };
        out.push(
            Finding::at(&QEMU_ROOT, &format!("{QEMU_CONF}: user"), None)
                .message(message)
                .why("every guest's QEMU then runs as root, outside libvirt's per-guest user and labels: a guest that escapes through a bug in QEMU's device emulation owns the host")
                .fix(fix),
        );
    }
    if number_setting(conf, "clear_emulator_capabilities") == Some(0) {
        out.push(
            Finding::at(&CAPABILITIES_KEPT, &format!("{QEMU_CONF}: clear_emulator_capabilities"), None)
                .message("clear_emulator_capabilities = 0: QEMU keeps root's capabilities")
                .why("libvirt normally drops every capability of QEMU: with this off, a QEMU running as root keeps them all (raw I/O, module loading, any file), and an escaped guest can use them")
                .fix(format!("remove clear_emulator_capabilities = 0 from {QEMU_CONF} (the default, 1, drops them)\nsystemctl restart libvirtd")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::*;

    /// The guide's qemu.conf: root, root's capabilities, the evdev ACL.
    const R2600X: &str = include_str!("../../../../examples/hosts/r2600x/etc/libvirt/qemu.conf");

    #[test]
    fn number_settings() {
        assert_eq!(number_setting(R2600X, "clear_emulator_capabilities"), Some(0));
        assert_eq!(number_setting("#clear_emulator_capabilities = 0\n", "clear_emulator_capabilities"), None);
        assert_eq!(
            number_setting("a = 1; clear_emulator_capabilities = 0 # x", "clear_emulator_capabilities"),
            Some(0)
        );
        assert_eq!(number_setting("clear_emulator_capabilities=+1", "clear_emulator_capabilities"), Some(1));
        assert_eq!(number_setting("clear_emulator_capabilities_x = 0", "clear_emulator_capabilities"), None);
    }

    #[test]
    fn guide_qemu_conf() {
        let mut b = Bench::new();
        b.qemu_conf = R2600X.to_string();
        let f = b.audit(&b.clean());
        exactly(&f, &["security-qemu-root", "security-capabilities-kept"]);
        let root = f.iter().find(|f| f.id == "security-qemu-root").unwrap();
        // Native evdev on libvirt 9.0: nothing here needs root.
        assert!(
            root.message.contains("only reason") && root.fix.contains("native <input type='evdev'> needs no root"),
            "{root:#?}"
        );
        assert!(root.fix.contains("group = \"root\""));
        assert_eq!(root.line, None);
    }

    #[test]
    fn root_for_evdev_on_old_libvirt() {
        let old = Bench { libvirt: Some((7, 0)), ..Bench::new() };
        let xml = old.clean();
        let b = Bench {
            libvirt: Some((7, 0)),
            qemu_conf: format!("user = \"root\"\ncgroup_device_acl = [ \"{KBD}\", \"{MOUSE}\" ]\n"),
            ..Bench::new()
        };
        let f = b.audit(&xml);
        exactly(&f, &["security-qemu-root"]);
        assert!(f[0].fix.contains("usermod -aG input libvirt-qemu") && !f[0].fix.contains("group = "), "{}", f[0].fix);
        // The same domain on libvirt 9.0: switch to the native form.
        let b = Bench { qemu_conf: b.qemu_conf.clone(), ..Bench::new() };
        let f = b.audit(&xml);
        exactly(&f, &["security-qemu-root", "evdev-commandline-where-native"]);
        let root = f.iter().find(|x| x.id == "security-qemu-root").unwrap();
        assert!(root.fix.contains("<input type='evdev'>"), "{}", root.fix);
    }

    #[test]
    fn root_for_other_reasons() {
        let mut b = Bench::new();
        b.qemu_conf = "user = \"+0\"\n".into();
        // No evdev at all.
        let xml = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| e.name == "input" && e.attr("type") == Some("evdev"));
            }
        });
        let f = b.audit(&xml);
        exactly(&f, &["security-qemu-root"]);
        assert!(!f[0].message.contains("evdev") && f[0].fix.contains("remove user = \"+0\""), "{f:#?}");
    }

    #[test]
    fn unprivileged_or_unknown_is_quiet() {
        let mut b = Bench::new();
        b.qemu_conf = "user = \"libvirt-qemu\"\ngroup = \"kvm\"\n#clear_emulator_capabilities = 0\n".into();
        exactly(&b.audit(&b.clean()), &[]);
        b.qemu_conf = "clear_emulator_capabilities = 1\n".into();
        exactly(&b.audit(&b.clean()), &[]);
        b.qemu_conf = "clear_emulator_capabilities = 0\n".into();
        exactly(&b.audit(&b.clean()), &["security-capabilities-kept"]);
    }
}
