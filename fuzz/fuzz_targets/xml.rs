#![no_main]
use libfuzzer_sys::fuzz_target;
use vfioctl_xml::{self as xml, Element};

// Any input: no panic; whatever parses writes back byte for byte; and a tree built with the
// input as attribute value, text and comment is well-formed and reads back as built.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(doc) = xml::parse(text) {
        assert_eq!(doc.write(), text);
    }
    let built = Element::new("d")
        .with_attr("v", text)
        .with_comment(text)
        .with_child(Element::new("t").with_text(text));
    let written = xml::Document::new(built).write();
    let back = xml::parse(&written).expect("built XML reads back");
    assert_eq!(back.root.attr("v"), Some(text));
    assert_eq!(back.root.child("t").map(Element::text).as_deref(), Some(text.trim()));
});
