#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    twice(&text, &e, edit::limine::edit);
    if let Ok(copy) = edit::limine::separate_entry(&text, &e) {
        let _ = edit::limine::separate_entry(&copy, &e);
    }
});
