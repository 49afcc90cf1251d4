use super::*;

fn host(files: &[(&str, &str)]) -> (tempfile::TempDir, HostRoot) {
    let d = tempfile::tempdir().unwrap();
    let r = HostRoot::new(d.path());
    for (f, text) in files {
        let p = r.path(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    (d, r)
}

fn source(files: &[(&str, &str)]) -> (Option<String>, Option<String>) {
    let (_d, r) = host(files);
    let b = detect(&r);
    (b.loader.map(|l| l.name().to_string()), b.next_boot.map(|n| format!("{}: {}", n.source, n.cmdline)))
}

#[test]
fn detects_from_files() {
    let (_d, r) =
        host(&[("/etc/default/grub", "x\n"), ("/usr/sbin/update-grub", ""), ("/etc/initramfs-tools/modules", "")]);
    let b = detect(&r);
    assert_eq!(b.loader, Some(Bootloader::Grub { regenerate: vec!["update-grub".into()] }));
    assert_eq!(b.initramfs, Some(Initramfs::InitramfsTools));
    let (_d, r) = host(&[
        ("/etc/default/grub", ""),
        ("/boot/loader/entries/a.conf", "options x\n"),
        ("/usr/sbin/grubby", ""),
        ("/etc/dracut.conf.d/x.conf", ""),
    ]);
    let b = detect(&r);
    assert!(matches!(b.loader, Some(Bootloader::LoaderEntries { grub_bls: true, .. })), "{b:?}");
    assert_eq!(b.initramfs, Some(Initramfs::Dracut));
    let (_d, r) = host(&[
        ("/boot/loader/loader.conf", "default arch.conf\n"),
        ("/boot/loader/entries/arch.conf", "options a\n"),
        ("/boot/loader/entries/arch-lts.conf", "options b\n"),
        ("/etc/mkinitcpio.conf", ""),
    ]);
    match detect(&r).loader {
        Some(Bootloader::LoaderEntries { default, grub_bls: false, .. }) => {
            assert_eq!(default, Some("/boot/loader/entries/arch.conf".into()))
        }
        other => panic!("{other:?}"),
    }
    let (_d, r) = host(&[("/etc/kernel/cmdline", "root=x\n"), ("/etc/default/grub", "")]);
    assert_eq!(detect(&r).loader, Some(Bootloader::KernelInstall { uki: false }));
    let (_d, r) = host(&[("/etc/kernelstub/configuration", "{\"user\": {\"kernel_options\": [\"quiet\"]}}")]);
    assert_eq!(detect(&r).loader, Some(Bootloader::Kernelstub));
    let (_d, r) = host(&[("/boot/refind_linux.conf", "\"a\" \"ro\"\n"), ("/etc/booster.yaml", "")]);
    let b = detect(&r);
    assert!(matches!(b.loader, Some(Bootloader::Refind { .. })));
    assert_eq!(b.initramfs, Some(Initramfs::Booster));
    let (_d, r) = host(&[("/boot/limine/limine.conf", "/Arch\n    protocol: linux\n    cmdline: ro\n")]);
    assert!(matches!(detect(&r).loader, Some(Bootloader::Limine { .. })));
    let (_d, r) = host(&[]);
    assert_eq!(detect(&r), BootSetup::default());
}

#[test]
fn next_boot_from_each_loader() {
    let refind = ("/boot/refind_linux.conf", "\"Boot with standard options\"  \"ro root=UUID=x quiet amd_iommu=on\"\n");
    assert_eq!(source(&[refind]).1.as_deref(), Some("/boot/refind_linux.conf: ro root=UUID=x quiet amd_iommu=on"));
    let grub =
        ("/etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"intel_iommu=on\"\n");
    let dropin =
        ("/etc/default/grub.d/90-vfio.cfg", "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\"\n");
    assert_eq!(
        source(&[refind, grub, dropin]).1.as_deref(),
        Some("/etc/default/grub.d/90-vfio.cfg (read after /etc/default/grub): intel_iommu=on quiet splash iommu=pt")
    );
    let conf = ("/boot/loader/loader.conf", "default arch.conf\n");
    let arch = (
        "/boot/loader/entries/arch.conf",
        "title Arch\nlinux /vmlinuz-linux\noptions root=PARTLABEL=x amd_iommu=on\noptions iommu=pt\n",
    );
    let lts = ("/boot/loader/entries/arch-lts.conf", "options root=PARTLABEL=x\n");
    assert_eq!(
        source(&[conf, arch, lts]),
        (
            Some("systemd-boot".into()),
            Some("boot loader entry /boot/loader/entries/arch.conf: root=PARTLABEL=x amd_iommu=on iommu=pt".into())
        )
    );
    // kernel-install writes /etc/kernel/cmdline into the entries.
    let k = ("/etc/kernel/cmdline", "root=UUID=y\nrw\n");
    assert_eq!(source(&[conf, arch, lts, k]).1.as_deref(), Some("/etc/kernel/cmdline: root=UUID=y rw"));
}

/// Where the two detectors of old disagreed: kernelstub beside its systemd-boot entries
/// (Pop!_OS). The configuration is what `apply` edits and what lasts.
#[test]
fn kernelstub_wins_over_the_entries_it_writes() {
    let stub = ("/etc/kernelstub/configuration", "{\"default\": {\"kernel_options\": [\"quiet\", \"splash\"]},\n \"user\": {\"kernel_options\": [\"quiet\", \"loglevel=0\", \"splash\", \"amd_iommu=on\"]}}\n");
    let entry = (
        "/boot/efi/loader/entries/Pop_OS-current.conf",
        "title Pop!_OS\nlinux /EFI/Pop_OS-x/vmlinuz.efi\noptions root=UUID=1 ro quiet loglevel=0 splash\n",
    );
    let (_d, r) = host(&[stub, entry, ("/boot/efi/loader/loader.conf", "default Pop_OS-current\n")]);
    let b = detect(&r);
    assert_eq!(b.loader, Some(Bootloader::Kernelstub));
    let nb = b.next_boot.unwrap();
    assert_eq!(nb.source, "kernelstub (/etc/kernelstub/configuration)");
    assert_eq!(nb.cmdline.to_string(), "quiet loglevel=0 splash amd_iommu=on");
    assert_eq!(b.passed_over.len(), 1, "{:?}", b.passed_over);
    assert!(b.passed_over[0].contains("/boot/efi/loader/entries"), "{:?}", b.passed_over);
}

/// Fedora/RHEL: GRUB reads the BLS entries; /etc/kernel/cmdline only seeds new kernels.
#[test]
fn grub_bls_entries_win_over_kernel_cmdline_and_default_grub() {
    let files = [
        ("/etc/os-release", "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=40\n"),
        ("/etc/default/grub", "GRUB_CMDLINE_LINUX=\"rhgb quiet\"\nGRUB_ENABLE_BLSCFG=true\n"),
        ("/etc/kernel/cmdline", "root=UUID=1 ro rhgb quiet\n"),
        ("/boot/grub2/grubenv", "# GRUB Environment Block\nsaved_entry=abc-6.8.5-301.fc40.x86_64\n"),
        (
            "/boot/loader/entries/abc-6.8.5-301.fc40.x86_64.conf",
            "title Fedora\noptions root=UUID=1 ro rhgb quiet amd_iommu=on\n",
        ),
        ("/boot/loader/entries/abc-6.9.4-200.fc40.x86_64.conf", "title Fedora\noptions root=UUID=1 ro rhgb quiet\n"),
        ("/boot/loader/entries/abc-0-rescue.conf", "title Rescue\noptions root=UUID=1 ro\n"),
    ];
    let (_d, r) = host(&files);
    let b = detect(&r);
    assert_eq!(b.loader.as_ref().map(Bootloader::name), Some("GRUB with BLS entries"));
    let nb = b.next_boot.unwrap();
    assert_eq!(nb.source, "boot loader entry /boot/loader/entries/abc-6.8.5-301.fc40.x86_64.conf", "saved_entry");
    assert!(nb.cmdline.has_value("amd_iommu", "on"));
    assert_eq!(b.passed_over.len(), 2, "{:?}", b.passed_over);
    // $kernelopts (before Fedora 33) from grubenv.
    let (_d, r) = host(&[
        ("/etc/default/grub", ""),
        ("/boot/grub2/grubenv", "kernelopts=root=UUID=1 ro intel_iommu=on\n"),
        ("/boot/loader/entries/x.conf", "options $kernelopts\n"),
    ]);
    assert_eq!(detect(&r).next_boot.unwrap().cmdline.to_string(), "root=UUID=1 ro intel_iommu=on");
    // tuned's variable, empty in grubenv, and one grubenv does not have.
    let (_d, r) = host(&[
        ("/etc/default/grub", ""),
        ("/boot/grub2/grubenv", "tuned_params=\n"),
        ("/boot/loader/entries/x.conf", "options ro quiet $tuned_params ${other}\n"),
    ]);
    assert_eq!(detect(&r).next_boot.unwrap().cmdline.to_string(), "ro quiet");
}

#[test]
fn limine_reads_the_default_entry_it_edits() {
    let conf = "timeout: 5\ndefault_entry: 2\n\n/Windows\n    protocol: efi\n    path: boot():/EFI/Microsoft/bootmgfw.efi\n/Arch\n    protocol: linux\n    cmdline: root=UUID=1 rw\n/Arch (fallback)\n    protocol: linux\n    cmdline: root=UUID=1 rw single\n";
    assert_eq!(source(&[("/boot/limine.conf", conf)]).1.as_deref(), Some("/boot/limine.conf: root=UUID=1 rw"));
}

#[test]
fn unreadable_or_broken_deciding_files_are_problems_not_absent() {
    let (_d, r) = host(&[("/etc/kernelstub/configuration", "{ not json")]);
    let b = detect(&r);
    assert_eq!(b.next_boot, None);
    assert!(b.problem.as_deref().is_some_and(|p| p.contains("/etc/kernelstub/configuration")), "{b:?}");
    let (_d, r) = host(&[("/boot/refind_linux.conf", "\"unterminated\n")]);
    assert!(detect(&r).problem.is_some());
}

#[test]
fn early_modules_of_each_builder() {
    let set = |b: &BootSetup| b.initramfs_modules.clone().map(|m| m.into_iter().collect::<Vec<_>>());
    let (_d, r) = host(&[("/etc/initramfs-tools/modules", "# list\nvfio\nvfio-pci ids=x\n")]);
    assert_eq!(set(&detect(&r)), Some(vec!["vfio".into(), "vfio_pci".into()]));
    let (_d, r) = host(&[
        ("/etc/mkinitcpio.conf", "MODULES=(amdgpu)\n"),
        ("/etc/mkinitcpio.conf.d/10-vfio.conf", "MODULES=(vfio vfio_pci \"${MODULES[@]}\")\n"),
    ]);
    assert_eq!(set(&detect(&r)), Some(vec!["amdgpu".into(), "vfio".into(), "vfio_pci".into()]));
    let (_d, r) =
        host(&[("/etc/dracut.conf", ""), ("/etc/dracut.conf.d/vfio.conf", "force_drivers+=\" vfio_pci \"\n")]);
    assert_eq!(set(&detect(&r)), Some(vec!["vfio_pci".into()]));
    let (_d, r) = host(&[("/etc/booster.yaml", "modules_force_load: vfio\n")]);
    assert_eq!(set(&detect(&r)), Some(vec!["vfio".into()]));
    let (_d, r) = host(&[("/etc/default/grub", "")]);
    assert_eq!(set(&detect(&r)), None);
}

#[test]
fn os_release() {
    let o =
        OsRelease::parse("NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n");
    assert_eq!((o.id.as_str(), o.version_id.as_str()), ("rocky", "9.4"));
    assert!(o.is_fedora_family() && o.is_like("rhel") && !o.is_like("debian"));
}

#[test]
fn the_newest_entry_is_the_default_by_version() {
    let (_d, r) = host(&[
        ("/boot/efi/loader/loader.conf", "timeout 3\n"),
        ("/boot/efi/loader/entries/m-6.8.0-51-generic.conf", "options old\n"),
        ("/boot/efi/loader/entries/m-6.11.0-19-generic.conf", "options new\n"),
    ]);
    assert_eq!(detect(&r).next_boot.unwrap().cmdline.to_string(), "new");
    use std::cmp::Ordering::*;
    assert_eq!(version_cmp("m-6.8.0", "m-6.11.0"), Less);
    assert_eq!(version_cmp("a-010", "a-9"), Greater);
    assert_eq!(version_cmp("x", "x"), Equal);
}

#[test]
fn mkinitcpio_presets_with_ukis() {
    let (_d, r) = host(&[
        ("/etc/kernel/cmdline", "root=UUID=1 rw\n"),
        ("/etc/mkinitcpio.conf", "MODULES=()\n"),
        ("/etc/mkinitcpio.d/linux.preset", "PRESETS=('default')\n#default_image=\"/boot/initramfs-linux.img\"\ndefault_uki=\"/efi/EFI/Linux/arch-linux.efi\"\n"),
    ]);
    assert_eq!(detect(&r).loader, Some(Bootloader::KernelInstall { uki: true }));
}

/// An EFI variable as the kernel shows it: 4 attribute bytes, then UTF-16LE with a NUL.
fn efivar(value: &str) -> Vec<u8> {
    let mut b = vec![7, 0, 0, 0];
    for u in value.encode_utf16().chain([0]) {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

/// Regression: a `loader.conf` whose `default` entry chain-loads rEFInd got `options`
/// added to that EFI-only entry; an entry starting Windows or a UKI was edited likewise.
#[test]
fn a_default_entry_that_is_not_linux_is_followed_or_refused() {
    let files = [
        ("/boot/loader/loader.conf", "timeout 3\ndefault refind.conf\n"),
        ("/boot/loader/entries/refind.conf", "title rEFInd\nefi /EFI/refind/refind_x64.efi\n"),
        ("/boot/loader/entries/arch.conf", "title Arch\nlinux /vmlinuz-linux\noptions root=UUID=1 rw\n"),
    ];
    assert_eq!(source(&files).0, None, "no rEFInd configuration: refused");
    let (_d, r) = host(&files);
    let p = detect(&r).problem.unwrap();
    assert!(p.contains("refind.conf: the default boot entry starts the EFI program /EFI/refind/refind_x64.efi"), "{p}");
    let mut with = files.to_vec();
    with.push(("/boot/refind_linux.conf", "\"Boot\" \"root=UUID=1 rw quiet\"\n"));
    let (_d, r) = host(&with);
    let b = detect(&r);
    assert!(matches!(b.loader, Some(Bootloader::Refind { .. })), "{b:?}");
    assert_eq!(b.next_boot.unwrap().cmdline.to_string(), "root=UUID=1 rw quiet");
    assert!(b.passed_over[0].contains("chain-loads rEFInd"), "{:?}", b.passed_over);
    let windows = [
        ("/boot/loader/loader.conf", "default windows*\n"),
        ("/boot/loader/entries/windows.conf", "title Windows\nefi /EFI/Microsoft/Boot/bootmgfw.efi\n"),
        ("/boot/loader/entries/arch.conf", "title Arch\nlinux /vmlinuz-linux\noptions rw\n"),
    ];
    let (_d, r) = host(&windows);
    assert!(detect(&r).problem.unwrap().contains("bootmgfw.efi"));
}

/// systemd-boot's EFI variables come before loader.conf (`bootctl set-default`,
/// `set-oneshot`), and `@saved` is the entry booted last.
#[test]
fn systemd_boots_efi_variables_choose_the_entry() {
    let var = |n: &str| format!("/sys/firmware/efi/efivars/{n}-{LOADER_GUID}");
    let files = [
        ("/boot/loader/loader.conf", "default arch.conf\n"),
        ("/boot/loader/entries/arch.conf", "linux /vmlinuz-linux\noptions a\n"),
        ("/boot/loader/entries/arch-lts.conf", "linux /vmlinuz-linux-lts\noptions b\n"),
    ];
    let with_var = |name: &str, value: &str, conf: Option<&str>| {
        let (d, r) = host(&files);
        if let Some(c) = conf {
            std::fs::write(r.path("/boot/loader/loader.conf"), c).unwrap();
        }
        let p = r.path(var(name));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, efivar(value)).unwrap();
        let line = detect(&r).next_boot.unwrap().cmdline.to_string();
        drop(d);
        line
    };
    assert_eq!(source(&files).1.unwrap(), "boot loader entry /boot/loader/entries/arch.conf: a");
    assert_eq!(with_var("LoaderEntryDefault", "arch-lts.conf", None), "b");
    assert_eq!(with_var("LoaderEntryOneShot", "arch-lts.conf", None), "b");
    assert_eq!(with_var("LoaderEntryLastBooted", "arch-lts.conf", Some("default @saved\n")), "b");
    assert_eq!(with_var("LoaderEntryLastBooted", "arch-lts.conf", None), "a", "only with @saved");
    assert_eq!(with_var("LoaderEntryDefault", "gone.conf", None), "a", "a variable naming no entry");
}
