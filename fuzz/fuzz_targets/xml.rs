#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_xml as xml;

// Any input: no panic; whatever parses writes back byte for byte.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(doc) = xml::parse(text) {
        assert_eq!(doc.write(), text);
    }
});
