#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    let _ = vfioctl_core::grub::kernel_cmdline([text.as_str()]);
    twice(&text, &e, edit::grub::edit);
});
