#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    twice(&text, &e, edit::loader_entry::edit);
    if let Ok(copy) = edit::loader_entry::separate_entry(&text, &e, edit::loader_entry::SEPARATE_SUFFIX) {
        let _ = edit::loader_entry::separate_entry(&copy, &e, edit::loader_entry::SEPARATE_SUFFIX);
    }
});
