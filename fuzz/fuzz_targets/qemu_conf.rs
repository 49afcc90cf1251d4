#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_core::edit::qemu_conf;

// The input as UTF-8 (lossy), split at the first NUL: qemu.conf text, then words that
// become device paths to add (besides two fixed ones).
fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data).into_owned();
    let (text, words) = s.split_once('\0').unwrap_or((s.as_str(), ""));
    let mut paths = vec!["/dev/input/by-id/kbd-event-kbd".to_string(), "/dev/null".to_string()];
    paths.extend(words.split_whitespace().map(str::to_string));
    let _ = qemu_conf::device_acl(text);
    if let Ok(once) = qemu_conf::add_device_acl(text, &paths) {
        let again = qemu_conf::add_device_acl(&once, &paths);
        assert!(again.as_ref().is_ok_and(|a| *a == once), "not idempotent: {text:?} → {once:?} → {again:?}");
        let acl = qemu_conf::device_acl(&once).unwrap_or_default();
        assert!(paths.iter().all(|p| acl.contains(p)), "paths missing: {text:?} → {once:?}");
    }
});
