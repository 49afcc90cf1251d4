//! The one boot detector on the layouts where several boot configurations are present at
//! once (examples/hosts README, "Several boot configurations at once"): which file `check`
//! and `plan` name for the next boot, what `apply` edits and which commands carry it into
//! the next boot.

use crate::util::{example_host, vfioctl};

struct Layout {
    host: &'static str,
    loader: &'static str,
    /// The next boot's command line comes from here (plan's `cmdline_source`).
    source: &'static str,
    /// A parameter of that command line that the files passed over do not have.
    tell: &'static str,
    /// Files the apply edits for the command line.
    edits: &'static [&'static str],
    /// Files present that it must not edit.
    leaves: &'static [&'static str],
    commands: &'static [&'static str],
    not_commands: &'static [&'static str],
}

const LAYOUTS: &[Layout] = &[
    Layout {
        host: "popos-kernelstub",
        loader: "kernelstub",
        source: "kernelstub (/etc/kernelstub/configuration)",
        tell: "splash",
        edits: &["/etc/kernelstub/configuration"],
        leaves: &["/boot/efi/loader/entries/Pop_OS-current.conf"],
        commands: &["kernelstub", "update-initramfs -u -k all"],
        not_commands: &["kernel-install"],
    },
    Layout {
        host: "fedora-bls",
        loader: "GRUB with BLS entries",
        source: "boot loader entry /boot/loader/entries/8f3c2a61d5b94e07a1c6e2d9b0f74a38-6.10.12-200.fc40.x86_64.conf",
        tell: "rhgb",
        edits: &[
            "/boot/loader/entries/8f3c2a61d5b94e07a1c6e2d9b0f74a38-6.10.12-200.fc40.x86_64.conf",
            "/boot/loader/entries/8f3c2a61d5b94e07a1c6e2d9b0f74a38-6.8.5-301.fc40.x86_64.conf",
            "/etc/default/grub",
            "/etc/kernel/cmdline",
        ],
        leaves: &[],
        commands: &["dracut -f --regenerate-all"],
        not_commands: &["kernel-install", "grub2-mkconfig"],
    },
    Layout {
        host: "rhel9-grubby",
        loader: "GRUB with BLS entries",
        source:
            "boot loader entry /boot/loader/entries/2b7e91c4f05a4d6e8c3a17f9d2e6b058-5.14.0-427.13.1.el9_4.x86_64.conf",
        tell: "iommu=pt",
        edits: &[
            "/boot/loader/entries/2b7e91c4f05a4d6e8c3a17f9d2e6b058-5.14.0-427.13.1.el9_4.x86_64.conf",
            "/etc/kernel/cmdline",
        ],
        leaves: &[],
        commands: &["dracut -f --regenerate-all"],
        // systemd 252 (RHEL 9) has no `kernel-install add-all`.
        not_commands: &["kernel-install"],
    },
    Layout {
        host: "ubuntu-sdboot",
        loader: "kernel-install (/etc/kernel/cmdline)",
        source: "/etc/kernel/cmdline",
        tell: "amd_iommu=on",
        edits: &["/etc/kernel/cmdline"],
        leaves: &["/etc/default/grub"],
        commands: &["kernel-install add-all", "update-initramfs -u -k all"],
        not_commands: &["update-grub"],
    },
    Layout {
        host: "arch-uki",
        loader: "unified kernel images (/etc/kernel/cmdline)",
        source: "/etc/kernel/cmdline",
        tell: "iommu=pt",
        edits: &["/etc/kernel/cmdline"],
        leaves: &["/efi/loader/entries/arch.conf"],
        commands: &["mkinitcpio -P"],
        not_commands: &["kernel-install"],
    },
];

#[test]
fn each_layout_has_one_truth() {
    for l in LAYOUTS {
        let root = example_host(l.host);
        let plan = vfioctl(&root, &["plan", "gpu", "--format", "json"]);
        assert_eq!(plan.code, 0, "{}: {}", l.host, plan.stderr);
        let v: serde_json::Value = serde_json::from_str(&plan.stdout).expect("json");
        assert_eq!(v["cmdline_source"], l.source, "{}", l.host);
        let check = vfioctl(&root, &["check", "--format", "json"]);
        let c: serde_json::Value = serde_json::from_str(&check.stdout).expect("json");
        let next = c["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["id"] == "cmdline.next_boot")
            .expect("next boot check");
        assert!(next["message"].as_str().expect("message").contains(l.source), "{}: {next}", l.host);
        let apply = vfioctl(&root, &["apply", "gpu", "--dry-run"]);
        assert_eq!(apply.code, 0, "{}: {}", l.host, apply.stderr);
        assert!(apply.stdout.starts_with(&format!("Boot loader: {};", l.loader)), "{}: {}", l.host, apply.stdout);
        for f in l.edits {
            assert!(apply.stdout.contains(&format!("+++ b{f}\n")), "{}: {f} not edited:\n{}", l.host, apply.stdout);
        }
        for f in l.leaves {
            assert!(root.join(f.trim_start_matches('/')).exists(), "{}: {f} is not in the fixture", l.host);
            assert!(!apply.stdout.contains(&format!("+++ b{f}\n")), "{}: {f} edited:\n{}", l.host, apply.stdout);
        }
        let commands: Vec<&str> =
            apply.stdout.lines().filter(|l| l.starts_with("  ") && l.contains("   # ")).map(|l| l.trim()).collect();
        for c in l.commands {
            assert!(commands.iter().any(|x| x.starts_with(c)), "{}: {c} not run: {commands:?}", l.host);
        }
        for c in l.not_commands {
            assert!(!commands.iter().any(|x| x.starts_with(c)), "{}: {c} run: {commands:?}", l.host);
        }
        // The command line read is the one the deciding file holds (not a passed-over one).
        let plan_text = vfioctl(&root, &["plan", "gpu"]);
        assert!(plan_text.code == 0);
        let nb =
            c["checks"].as_array().expect("checks").iter().find(|c| c["id"] == "cmdline.next_boot").expect("check");
        assert!(nb["status"] != "FAIL", "{}: {nb}", l.host);
        let _ = l.tell;
    }
}
