#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (text, e) = split(data);
    let c = vfioctl_core::cmdline::Cmdline::parse(&text);
    let _ = c.to_string();
    let _ = edit::cmdline::edit(&text, &e);
    twice(&text, &e, edit::kernel_cmdline_file::edit);
    // kernelstub: the words as a JSON array too.
    let _ = edit::kernelstub::edit(Some(&text), &e);
    let json = format!("{{\"user\": {{\"kernel_options\": {:?}}}}}", text.split_whitespace().collect::<Vec<_>>());
    twice(&json, &e, edit::kernelstub::edit);
});
