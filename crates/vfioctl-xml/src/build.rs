//! Building a tree in code, for XML that is written rather than read: a rendered domain,
//! a snippet of one for a finding.
//!
//! Elements are made with [`Element::new`] and the `with_*` methods (or [`Element::push`]
//! and [`Element::push_comment`] in a loop), without any layout whitespace; text and
//! attribute values are given as they mean and escaped when written. [`Element::laid_out`]
//! then puts every child on a line of its own, indented one `unit` per level, the way
//! libvirt writes domains; [`Document::new`] does that for a whole document, and
//! [`Element::pretty`] gives a laid-out element as text.
//!
//! ```
//! use vfioctl_xml::{Document, Element};
//! let clock = Element::new("clock")
//!     .with_attr("offset", "localtime")
//!     .with_comment("Windows keeps local time")
//!     .with_child(Element::new("timer").with_attr("name", "hpet").with_attr("present", "no"));
//! let doc = Document::new(Element::new("domain").with_child(Element::new("name").with_text("a&b")).with_child(clock));
//! assert_eq!(
//!     doc.write(),
//!     "<domain>\n  <name>a&amp;b</name>\n  <clock offset='localtime'>\n    <!-- Windows keeps local time -->\n    <timer name='hpet' present='no'/>\n  </clock>\n</domain>\n"
//! );
//! ```

use super::{esc, Document, Element, Node};

/// Two spaces: how libvirt indents the XML it writes.
pub const LIBVIRT_INDENT: &str = "  ";

impl Document {
    /// A document of `root` alone, laid out with [`LIBVIRT_INDENT`] and ending in a line
    /// break, as `virsh dumpxml` writes one.
    pub fn new(root: Element) -> Self {
        Document { before: Vec::new(), root: root.laid_out(0, LIBVIRT_INDENT), after: vec![Node::Text("\n".into())] }
    }
}

impl Node {
    /// A comment `<!-- text -->` (a space on either side of `text`). XML forbids `--`
    /// inside a comment, so each pair of dashes in `text` is written `- -` (a command-line
    /// flag in a message stays readable, the comment well-formed).
    pub fn comment(text: &str) -> Node {
        let mut text = text.to_string();
        while text.contains("--") {
            text = text.replace("--", "- -");
        }
        Node::Comment(format!(" {text} "))
    }

    /// The node as text, as [`Document::write`] writes it.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl Element {
    /// A new element that keeps its end tag while it has no content: `<name></name>`,
    /// or the end tag on a line of its own once [laid out](Element::laid_out).
    pub fn open(name: &str) -> Self {
        Element::bare(name.to_string(), 0, 0)
    }

    /// Builder: the character content `text` (escaped when written), replacing any
    /// content; `<name></name>` for empty text.
    pub fn with_text(mut self, text: &str) -> Self {
        self.children = vec![Node::Text(esc(text))];
        self.empty = false;
        self
    }

    /// Builder: `child` after the children so far.
    pub fn with_child(mut self, child: Element) -> Self {
        self.push(child);
        self
    }

    /// Builder: each of `children`, in order, after the children so far.
    pub fn with_children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        for c in children {
            self.push(c);
        }
        self
    }

    /// Builder: a comment `<!-- text -->` after the children so far.
    pub fn with_comment(mut self, text: &str) -> Self {
        self.push_comment(text);
        self
    }

    /// Appends a child element.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(Box::new(child)));
    }

    /// Appends a comment `<!-- text -->`.
    pub fn push_comment(&mut self, text: &str) {
        self.children.push(Node::comment(text));
    }

    /// The start tag alone, `<name a='v'>`, attributes as [`Element::to_xml`] writes them.
    pub fn start_tag(&self) -> String {
        let mut out = String::new();
        self.write_start(&mut out);
        out.push('>');
        out
    }

    /// This element laid out to sit at `depth` levels of `unit`: every child element and
    /// comment on a line of its own, one level deeper than its parent; elements holding
    /// only text stay on one line. Layout whitespace it had is replaced.
    pub fn laid_out(mut self, depth: usize, unit: &str) -> Self {
        self.lay_out(depth, unit);
        self
    }

    /// The element as text, laid out at the left margin with [`LIBVIRT_INDENT`]: a snippet
    /// to paste into a domain.
    pub fn pretty(&self) -> String {
        self.clone().laid_out(0, LIBVIRT_INDENT).to_xml()
    }

    fn lay_out(&mut self, depth: usize, unit: &str) {
        if self.children.is_empty() && !self.empty {
            // Made with `open`: the end tag under the start tag.
            self.children.push(Node::Text(format!("\n{}", unit.repeat(depth))));
            return;
        }
        self.layout(depth + 1, unit, "\n", &mut |e, d| e.lay_out(d, unit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn a_built_tree_reads_back_as_itself() {
        let e = Element::new("hostdev")
            .with_attr("mode", "subsystem")
            .with_child(Element::new("source").with_child(Element::new("address").with_attr("bus", "0x0d")))
            .with_comment("it's <ours>")
            .with_child(Element::new("rom").with_attr("file", "/a'b&c"));
        let text = e.pretty();
        assert_eq!(
            text,
            "<hostdev mode='subsystem'>\n  <source>\n    <address bus='0x0d'/>\n  </source>\n  <!-- it's <ours> -->\n  <rom file='/a&apos;b&amp;c'/>\n</hostdev>"
        );
        let back = parse(&text).unwrap().root;
        assert!(back.same_as(&e));
        assert_eq!(back.find("rom").unwrap().attr("file"), Some("/a'b&c"));
        assert_eq!(e.start_tag(), "<hostdev mode='subsystem'>");
    }

    #[test]
    fn any_string_reads_back_from_a_built_tree() {
        for s in ["", "a'b\"c", "<&>", "]]>", "&amp;", " spaced  ", "line\nbreak\ttab\r", "é\u{feff}ü", "<!-- x -->"]
        {
            let built = Element::new("d").with_attr("v", s).with_child(Element::new("t").with_text(s));
            let back = parse(&Document::new(built).write()).unwrap().root;
            assert_eq!(back.attr("v"), Some(s), "{s:?}");
            assert_eq!(back.child("t").unwrap().text(), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn open_empty_and_text_elements() {
        let d = Document::new(
            Element::new("d")
                .with_child(Element::open("hyperv").with_attr("mode", "custom"))
                .with_child(Element::new("name").with_text(""))
                .with_child(Element::new("vcpu").with_text("4"))
                .with_child(Element::new("acpi")),
        );
        assert_eq!(
            d.write(),
            "<d>\n  <hyperv mode='custom'>\n  </hyperv>\n  <name></name>\n  <vcpu>4</vcpu>\n  <acpi/>\n</d>\n"
        );
        assert_eq!(Element::open("x").to_xml(), "<x></x>");
        assert_eq!(Node::comment("c").to_xml(), "<!-- c -->");
        assert_eq!(Node::comment("--vcpus, ---").to_xml(), "<!-- - -vcpus, - - - -->");
        assert!(parse(&Element::new("d").with_comment("a-- --- -").to_xml()).is_ok());
        // Laying out twice changes nothing.
        assert_eq!(Document::new(d.root.clone()).write(), d.write());
    }
}
