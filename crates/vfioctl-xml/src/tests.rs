use super::*;

const GUIDE_000: &str = include_str!("../../../examples/domains/guide-000-CompromisedBeast.xml");
const GUIDE_001: &str = include_str!("../../../examples/domains/guide-001-win10.xml");

fn doc(s: &str) -> Document {
    parse(s).unwrap()
}

#[test]
fn the_guides_domains_round_trip_byte_for_byte() {
    for g in [GUIDE_000, GUIDE_001] {
        let d = doc(g);
        assert_eq!(d.write(), g);
        assert_eq!(d.root.name, "domain");
        assert_eq!(d.indent_unit(), "  ");
    }
    let d = doc(GUIDE_000);
    assert_eq!(d.root.find("name").unwrap().text(), "CompromisedBeast");
    assert_eq!(d.root.find("features/hyperv/vendor_id").unwrap().attr("value"), Some("banana"));
    let vcpu = d.root.find("vcpu").unwrap();
    assert_eq!((vcpu.line, vcpu.column), (6, 3));
}

#[test]
fn awkward_but_valid_xml_round_trips() {
    for s in [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE d [<!ENTITY x \"y\">]>\n<d/>\n",
        "\u{feff}<d a=\"1\"  b = 'two' \n c='&amp;&#65;&#x42;'  ></d  >",
        "<!-- c --><d><![CDATA[<raw> & ]]><?pi x?><e/>text &lt; more</d><!-- after -->\n",
        "<d xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:commandline/></d>",
        "<d>\r\n\t<é attr='ü'/>\r\n</d>",
    ] {
        assert_eq!(doc(s).write(), s);
    }
    let d = doc("<d><![CDATA[a<b]]> &amp; c</d>");
    assert_eq!(d.root.text(), "a<b & c");
}

#[test]
fn malformed_xml_says_where() {
    for (s, line, column, what) in [
        ("<d>\n  <e>\n</d>", 3, 1, "</d> closes <e> opened at line 2, column 3"),
        ("<d>\n  <e a=1/>\n</d>", 2, 8, "the value of `a` is not quoted"),
        ("<d a='1' a='2'/>", 1, 10, "appears twice"),
        ("<d>&nbsp;</d>", 1, 4, "unknown entity `&nbsp;`"),
        ("<d>\n<e>", 2, 1, "<e> is never closed"),
        ("", 1, 1, "no root element"),
        ("<d/><e/>", 1, 5, "content after the root element"),
        ("<d><!-- x", 1, 4, "comment is never closed"),
        ("<d a='<'/>", 1, 7, "`<` in the value"),
        ("<d></e>", 1, 4, "</e> closes <d>"),
        ("x<d/>", 1, 1, "text before the root element"),
        ("<d><1/></d>", 1, 5, "expected a name"),
    ] {
        let e = parse(s).unwrap_err();
        assert!(e.message.contains(what), "{s:?}: {e}");
        assert_eq!((e.line, e.column), (line, column), "{s:?}: {e}");
    }
}

#[test]
fn no_prefix_or_mangling_of_a_guide_panics() {
    let g = GUIDE_001;
    let round_trips = |s: &str| {
        if let Ok(d) = parse(s) {
            assert_eq!(d.write(), s);
        }
    };
    for (i, _) in g.char_indices().step_by(29) {
        round_trips(&g[..i]);
        round_trips(&g[i..]);
        for c in ['<', '>', '&', '\'', '"', '/', '='] {
            let mut s = g.to_string();
            s.insert(i, c);
            round_trips(&s);
        }
    }
    let deep = "<a>".repeat(100_000);
    assert!(parse(&deep).is_err());
    let deep = format!("{}{}", "<a>".repeat(600), "</a>".repeat(600));
    assert!(parse(&deep).unwrap_err().message.contains("nested deeper than 512"));
}

#[test]
fn setting_an_attribute_keeps_the_others_raw() {
    let mut d = doc("<d>\n  <e  b=\"1\" a='x'   />\n</d>");
    let e = d.root.child_mut("e").unwrap();
    assert!(!e.set_attr("b", "1"));
    assert!(e.set_attr("a", "it's"));
    assert!(e.set_attr("c", "3"));
    // Quoted like the element's first quoted attribute: one tag, one style.
    assert_eq!(d.write(), "<d>\n  <e  b=\"1\" a=\"it&apos;s\" c=\"3\"   />\n</d>");
    let mut d = doc("<d>\n  <e a='x'/>\n  <f/>\n</d>");
    assert!(d.root.child_mut("e").unwrap().set_attr("b", "2"));
    assert!(d.root.child_mut("f").unwrap().set_attr("b", "2"));
    assert_eq!(d.write(), "<d>\n  <e a='x' b='2'/>\n  <f b='2'/>\n</d>");
}

/// Regression: in a double-quoted, tab-indented or CRLF file, inserted lines came out
/// single-quoted, space-indented and with bare `\n` line ends.
#[test]
fn inserting_follows_the_documents_style() {
    let src = "<?xml version=\"1.0\"?>\r\n<domain type=\"kvm\">\r\n\t<devices>\r\n\t\t<disk type=\"file\"/>\r\n\t</devices>\r\n</domain>\r\n";
    let mut d = doc(src);
    let style = d.style();
    assert_eq!(style, Style { indent: "\t".into(), newline: "\r\n", quote: '"' });
    let hostdev = Element::new("hostdev")
        .with_attr("mode", "subsystem")
        .with_child(Element::new("source").with_child(Element::new("address").with_attr("bus", "0x0d")));
    d.root.child_mut("devices").unwrap().insert(
        None,
        vec![Node::comment("passed"), Node::Element(Box::new(hostdev))],
        2,
        &style,
    );
    d.root.insert(
        None,
        vec![Node::Element(Box::new(Element::new("vcpu").with_attr("placement", "static").with_text("4")))],
        1,
        &style,
    );
    assert_eq!(
        d.write(),
        "<?xml version=\"1.0\"?>\r\n<domain type=\"kvm\">\r\n\t<devices>\r\n\t\t<disk type=\"file\"/>\r\n\t\t<!-- passed -->\r\n\t\t<hostdev mode=\"subsystem\">\r\n\t\t\t<source>\r\n\t\t\t\t<address bus=\"0x0d\"/>\r\n\t\t\t</source>\r\n\t\t</hostdev>\r\n\t</devices>\r\n\t<vcpu placement=\"static\">4</vcpu>\r\n</domain>\r\n"
    );
    assert_eq!(doc("<d/>").style(), Style::libvirt());
    assert_eq!(doc("<d a='1'>\n    <e/>\n</d>").style(), Style { indent: "    ".into(), newline: "\n", quote: '\'' });
}

#[test]
fn inserting_indents_like_the_siblings() {
    let mut d = doc("<d>\n    <a/>\n    <b/>\n</d>\n");
    let style = d.style();
    assert_eq!(style.indent, "    ");
    let mut new = Element::new("c").with_attr("x", "1");
    new.insert(None, vec![Node::Element(Box::new(Element::new("leaf")))], 1, &Style::libvirt());
    d.root.insert(Some(0), vec![Node::Comment(" why ".into()), Node::Element(Box::new(new))], 1, &style);
    d.root.insert(None, vec![Node::Element(Box::new(Element::new("z")))], 1, &style);
    assert_eq!(
        d.write(),
        "<d>\n    <a/>\n    <!-- why -->\n    <c x='1'>\n        <leaf/>\n    </c>\n    <b/>\n    <z/>\n</d>\n"
    );
    let mut e = doc("<d>\n  <f/>\n</d>");
    e.root.child_mut("f").unwrap().insert(None, vec![Node::Element(Box::new(Element::new("g")))], 2, &Style::libvirt());
    assert_eq!(e.write(), "<d>\n  <f>\n    <g/>\n  </f>\n</d>");
}

#[test]
fn removing_takes_the_line_but_keeps_comments() {
    let mut d = doc("<d>\n  <a/>\n  <!-- mine -->\n  <b n='1'/>\n  <b n='2'/>\n</d>");
    assert_eq!(d.root.remove_elements(|e| e.attr("n") == Some("1")), 1);
    assert_eq!(d.write(), "<d>\n  <a/>\n  <!-- mine -->\n  <b n='2'/>\n</d>");
    assert_eq!(d.root.remove_elements(|_| true), 2);
    assert_eq!(d.write(), "<d>\n  <!-- mine -->\n</d>");
    let mut e = doc("<d>\n  <a/>\n</d>");
    e.root.remove_elements(|_| true);
    assert_eq!(e.write(), "<d/>");
}

#[test]
fn sameness_ignores_layout_and_attribute_order() {
    let a = doc("<d a='1' b=\"2\">\n  <!-- c -->\n  <e>x</e>\n</d>").root;
    let b = doc("<d b='2' a='1'><e> x </e></d>").root;
    let c = doc("<d b='2' a='1'><e>y</e></d>").root;
    assert!(a.same_as(&b));
    assert!(!a.same_as(&c));
}
