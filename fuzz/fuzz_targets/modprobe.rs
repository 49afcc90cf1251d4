#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    let mut c = vfioctl_core::modprobe::ModprobeConfig::default();
    c.add(&text);
    let lines: Vec<String> = ["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1", "softdep nouveau pre: vfio-pci"]
        .iter()
        .map(|s| s.to_string())
        .chain(e.add.iter().skip(3).cloned())
        .collect();
    let once = edit::owned::owned_file(Some(&text), "# vfioctl\n", &lines);
    assert_eq!(edit::owned::owned_file(Some(&once), "# vfioctl\n", &lines), once);
});
