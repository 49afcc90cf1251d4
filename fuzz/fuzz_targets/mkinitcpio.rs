#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    let m = modules(&e);
    if let Ok(once) = edit::mkinitcpio::edit(Some(&text), &m) {
        let _ = edit::mkinitcpio::edit(Some(&once), &m);
    }
    let _ = edit::initramfs_tools::edit(Some(&text), &m);
    let _ = edit::dracut::edit(Some(&text), &m);
});
