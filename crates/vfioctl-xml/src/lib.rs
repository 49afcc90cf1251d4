//! # vfioctl-xml: a lossless XML tree
//!
//! vfioctl edits libvirt domains that people wrote or tuned by hand. Patching such a file
//! must keep everything that is theirs: comments, the order and quoting of attributes,
//! indentation, elements vfioctl knows nothing about, namespaces. This crate reads XML
//! into a tree that keeps all of that, lets a caller change parts of it, and writes it
//! back. It depends on no other crate of vfioctl and does no I/O: text in, text out.
//!
//! ## What the tree guarantees
//!
//! - **Byte-for-byte round trip.** Every byte of the input ends up somewhere in the tree
//!   (the raw text of each attribute, the whitespace inside tags, text exactly as written,
//!   comments, CDATA, processing instructions, the DOCTYPE, a byte-order mark), so
//!   [`Document::write`] of a document nobody changed is the input, unchanged.
//! - **Edits are local.** An attribute that is [set](Element::set_attr) loses its raw
//!   text and is written `name='value'`, libvirt's own style; its siblings keep theirs.
//!   An attribute set on an element whose other attributes are double-quoted is written
//!   `name="value"`. [Inserted](Element::insert) elements are written in the document's
//!   [style](Document::style): indented like their new siblings with its unit (spaces or
//!   tabs), its line ends (`\n` or `\r\n`) and its quotes; [removed](Element::remove_elements)
//!   ones take their line with them but leave the user's comments.
//! - **Line and column.** Every parsed element remembers the 1-based line and column (in
//!   characters) of its `<`, so findings can point into the user's file; an [`XmlError`]
//!   says where the input went wrong and what was open. Elements made in code have 0, 0.
//! - **A depth limit.** Nesting deeper than 512 elements is an error. The reader is
//!   iterative, and the limit keeps the recursive writer and `Drop` far from the end of
//!   the stack, so hostile input cannot overflow it.
//! - **No panics.** Malformed input of any kind is an [`XmlError`], never a panic; the
//!   fuzz target `xml` (in the repository's `fuzz/`) checks this and the round trip on
//!   arbitrary bytes, and the tests here on every prefix, suffix and mangling of a
//!   real domain.
//!
//! It reads what libvirt writes and what people write by hand; it is not a validating
//! parser (no DTDs, no entities beyond the five predefined ones and character references).
//!
//! XML that is written rather than read (a rendered domain, a snippet in a finding) is
//! built with the same types: [`Element::new`] with `with_attr`, `with_child`, `with_text`
//! and `with_comment`, then laid out libvirt's way by [`Document::new`],
//! [`Element::laid_out`] or [`Element::pretty`]. Values are escaped when written, so
//! built XML is well-formed whatever the strings hold, and it reads back as itself.
//!
//! ```
//! let text = "<domain type=\"kvm\">\n  <!-- mine -->\n  <vcpu>4</vcpu>\n</domain>\n";
//! let mut doc = vfioctl_xml::parse(text).unwrap();
//! assert_eq!(doc.write(), text);
//! let vcpu = doc.root.child_mut("vcpu").unwrap();
//! assert_eq!((vcpu.line, vcpu.column), (3, 3));
//! vcpu.set_attr("placement", "static");
//! assert_eq!(doc.write(), "<domain type=\"kvm\">\n  <!-- mine -->\n  <vcpu placement='static'>4</vcpu>\n</domain>\n");
//! ```

mod build;
mod parse;

use std::fmt;

pub use build::LIBVIRT_INDENT;

/// How a document is laid out, so that what is inserted into it looks like the rest:
/// the unit of indentation, the line end, the quote around attribute values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// One level of indentation (two spaces, four, a tab…).
    pub indent: String,
    /// `"\n"`, or `"\r\n"` in a file written on Windows.
    pub newline: &'static str,
    /// `'` (libvirt's own) or `"`.
    pub quote: char,
}

impl Style {
    /// How libvirt writes a domain: two spaces, `\n`, single quotes.
    pub fn libvirt() -> Style {
        Style { indent: LIBVIRT_INDENT.to_string(), newline: "\n", quote: '\'' }
    }
}

impl Default for Style {
    fn default() -> Self {
        Style::libvirt()
    }
}
pub use parse::{parse, XmlError};

/// A whole document: what comes before the root (declaration, comments), the root, and
/// what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub before: Vec<Node>,
    pub root: Element,
    pub after: Vec<Node>,
}

/// One piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Boxed: most nodes of a domain are the whitespace between elements, and a node is
    /// then the size of a string, not of an element.
    Element(Box<Element>),
    /// Character data exactly as written (entities still escaped).
    Text(String),
    /// The inside of `<!--…-->`.
    Comment(String),
    /// CDATA, processing instructions and DOCTYPE, verbatim.
    Raw(String),
}

/// An attribute; `raw` is its exact source (with the whitespace before it) until it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub value: String,
    raw: Option<String>,
}

impl Attr {
    /// ` name=QvalueQ`, the value escaped.
    fn quoted(name: &str, value: &str, quote: char) -> Attr {
        let raw = format!(" {name}={quote}{}{quote}", esc(value));
        Attr { name: name.to_string(), value: value.to_string(), raw: Some(raw) }
    }

    /// The quote its source uses, when it has one.
    fn quote(&self) -> Option<char> {
        let raw = self.raw.as_deref()?;
        raw.get(raw.find('=')? + 1..)?.trim_start().chars().next().filter(|c| *c == '\'' || *c == '"')
    }
}

/// An element with its attributes in their order and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    attrs: Vec<Attr>,
    pub children: Vec<Node>,
    /// Whitespace between the last attribute and `>` or `/>`.
    tag_space: String,
    /// Written as `<name/>` (while it has no children).
    empty: bool,
    /// Whitespace inside the end tag, `</name  >`.
    end_space: String,
    /// Where its `<` was in the source; 0 for elements made here.
    pub line: u32,
    pub column: u32,
}

/// `&`, `<`, `>`, `'` and `"` as entities.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl Document {
    /// The text of the document; the input unchanged when nothing was edited.
    pub fn write(&self) -> String {
        let mut out = String::new();
        for n in &self.before {
            n.write(&mut out);
        }
        self.root.write(&mut out);
        for n in &self.after {
            n.write(&mut out);
        }
        out
    }

    /// The indentation unit of the document: what the root's first child is indented by
    /// (two spaces when that cannot be told).
    pub fn indent_unit(&self) -> String {
        for n in &self.root.children {
            if let Node::Text(t) = n {
                if let Some(i) = t.rfind('\n') {
                    let unit = t.get(i + 1..).unwrap_or("");
                    if !unit.is_empty() && unit.trim().is_empty() {
                        return unit.to_string();
                    }
                }
            }
        }
        LIBVIRT_INDENT.to_string()
    }

    /// The document's layout ([`Style`]): its [unit](Document::indent_unit); `\r\n` when
    /// the first line break among the root's children is one; the quote of the first quoted
    /// attribute of the root or its children (libvirt's style for what cannot be told).
    pub fn style(&self) -> Style {
        let newline = self
            .root
            .children
            .iter()
            .find_map(|n| match n {
                Node::Text(t) => t.find('\n').map(|i| if t[..i].ends_with('\r') { "\r\n" } else { "\n" }),
                _ => None,
            })
            .unwrap_or("\n");
        let quote = std::iter::once(&self.root)
            .chain(self.root.elements())
            .find_map(|e| e.attrs.iter().find_map(Attr::quote))
            .unwrap_or('\'');
        Style { indent: self.indent_unit(), newline, quote }
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.write())
    }
}

impl Node {
    fn write(&self, out: &mut String) {
        match self {
            Node::Element(e) => e.write(out),
            Node::Text(t) | Node::Raw(t) => out.push_str(t),
            Node::Comment(c) => {
                out.push_str("<!--");
                out.push_str(c);
                out.push_str("-->");
            }
        }
    }

    pub fn as_element(&self) -> Option<&Element> {
        match self {
            Node::Element(e) => Some(e),
            _ => None,
        }
    }

    fn is_blank(&self) -> bool {
        matches!(self, Node::Text(t) if t.trim().is_empty())
    }
}

impl Element {
    fn bare(name: String, line: u32, column: u32) -> Self {
        Element {
            name,
            attrs: Vec::new(),
            children: Vec::new(),
            tag_space: String::new(),
            empty: false,
            end_space: String::new(),
            line,
            column,
        }
    }

    /// A new element, written `<name/>` until it gets children.
    pub fn new(name: &str) -> Self {
        let mut e = Element::bare(name.to_string(), 0, 0);
        e.empty = true;
        e
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: &str, value: &str) -> Self {
        self.set_attr(name, value);
        self
    }

    /// `<name`, the attributes and the space before `>`.
    fn write_start(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for a in &self.attrs {
            match &a.raw {
                Some(raw) => out.push_str(raw),
                None => {
                    out.push(' ');
                    out.push_str(&a.name);
                    out.push_str("='");
                    out.push_str(&esc(&a.value));
                    out.push('\'');
                }
            }
        }
        out.push_str(&self.tag_space);
    }

    fn write(&self, out: &mut String) {
        self.write_start(out);
        if self.empty && self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            c.write(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push_str(&self.end_space);
        out.push('>');
    }

    /// The element as text (with its own raw parts).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn attrs(&self) -> impl Iterator<Item = &Attr> {
        self.attrs.iter()
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.value.as_str())
    }

    /// Sets an attribute, keeping its place; a no-op (raw text kept) when the value is
    /// already that. Returns whether anything changed. It is quoted like the element's
    /// other attributes (`'` when they are, or when it has none).
    pub fn set_attr(&mut self, name: &str, value: &str) -> bool {
        let quote = self.attrs.iter().find_map(Attr::quote);
        let new = |name: &str| match quote {
            Some('"') => Attr::quoted(name, value, '"'),
            _ => Attr { name: name.to_string(), value: value.to_string(), raw: None },
        };
        match self.attrs.iter_mut().find(|a| a.name == name) {
            Some(a) if a.value == value => false,
            Some(a) => {
                *a = new(name);
                true
            }
            None => {
                self.attrs.push(new(name));
                true
            }
        }
    }

    /// Writes the attributes that have no source text of their own (set in code) with
    /// `quote`, here and in every descendant.
    pub fn requote(&mut self, quote: char) {
        if quote != '\'' {
            for a in self.attrs.iter_mut().filter(|a| a.raw.is_none()) {
                *a = Attr::quoted(&a.name, &a.value, quote);
            }
        }
        for e in self.elements_mut() {
            e.requote(quote);
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> bool {
        let before = self.attrs.len();
        self.attrs.retain(|a| a.name != name);
        before != self.attrs.len()
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(Node::as_element)
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(&mut **e),
            _ => None,
        })
    }

    /// The first child element with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// Child elements with this name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.name == name)
    }

    /// Follows a `/`-separated path of child names from this element.
    pub fn find(&self, path: &str) -> Option<&Element> {
        path.split('/').filter(|s| !s.is_empty()).try_fold(self, |e, name| e.child(name))
    }

    pub fn find_mut(&mut self, path: &str) -> Option<&mut Element> {
        let mut e = self;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            e = e.child_mut(name)?;
        }
        Some(e)
    }

    /// The character content (text and CDATA, entities decoded), trimmed.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            match c {
                Node::Text(t) => out.push_str(&parse::unescape(t).unwrap_or_else(|_| t.clone())),
                Node::Raw(r) => {
                    if let Some(inner) = r.strip_prefix("<![CDATA[").and_then(|r| r.strip_suffix("]]>")) {
                        out.push_str(inner);
                    }
                }
                _ => {}
            }
        }
        out.trim().to_string()
    }

    /// Sets the character content of a leaf element; a no-op when equal.
    pub fn set_text(&mut self, value: &str) -> bool {
        if self.text() == value.trim() && self.elements().next().is_none() {
            return false;
        }
        self.children = vec![Node::Text(esc(value))];
        true
    }

    /// Removes the child elements for which `drop` is true, with the whitespace in front
    /// of each; comments are the user's and stay. Returns how many went.
    pub fn remove_elements(&mut self, mut drop: impl FnMut(&Element) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.children.len() {
            let goes = matches!(&self.children[i], Node::Element(e) if drop(e));
            if !goes {
                i += 1;
                continue;
            }
            self.children.remove(i);
            removed += 1;
            // The line break and indentation that led up to it; comments stay.
            let mut j = i;
            if j > 0 && self.children[j - 1].is_blank() {
                self.children.remove(j - 1);
                j -= 1;
            }
            i = j;
        }
        if removed > 0 && self.elements().next().is_none() && self.children.iter().all(Node::is_blank) {
            self.children.clear();
            self.empty = true;
        }
        removed
    }

    /// Inserts `nodes` (an element, maybe with a comment before it) as children, after
    /// the child element at `after` (an index among child elements), or at the end. They
    /// are indented for `depth` levels of the style's unit, like the siblings, and written
    /// with its line ends and quotes.
    pub fn insert(&mut self, after: Option<usize>, nodes: Vec<Node>, depth: usize, style: &Style) {
        let indent = format!("{}{}", style.newline, style.indent.repeat(depth));
        let close = format!("{}{}", style.newline, style.indent.repeat(depth.saturating_sub(1)));
        let mut block = Vec::new();
        for n in nodes {
            block.push(Node::Text(indent.clone()));
            block.push(match n {
                Node::Element(mut e) => {
                    e.reindent(depth + 1, style);
                    e.requote(style.quote);
                    Node::Element(e)
                }
                other => other,
            });
        }
        if self.children.iter().all(Node::is_blank) {
            self.children.clear();
            self.children.extend(block);
            self.children.push(Node::Text(close));
            self.empty = false;
            return;
        }
        let at = match after {
            Some(k) => self
                .children
                .iter()
                .enumerate()
                .filter(|(_, n)| matches!(n, Node::Element(_)))
                .nth(k)
                .map(|(i, _)| i + 1),
            None => None,
        };
        let at = match at {
            Some(i) => i,
            // At the end, before the closing whitespace.
            None => match self.children.last() {
                Some(n) if n.is_blank() => self.children.len() - 1,
                _ => {
                    self.children.push(Node::Text(close));
                    self.children.len() - 1
                }
            },
        };
        for (k, n) in block.into_iter().enumerate() {
            self.children.insert(at + k, n);
        }
    }

    /// Replaces this element's layout whitespace so it sits at `depth` levels of the
    /// style's unit, with its line ends.
    pub fn reindent(&mut self, depth: usize, style: &Style) {
        self.layout(depth, &style.indent, style.newline, &mut |e, d| e.reindent(d + 1, style));
    }

    /// Puts each child element and comment on a line of its own (ended by `newline`) at
    /// `depth` levels of `unit`, the end tag one level less, after `child` has laid out
    /// each child element (given the depth it sits at). Elements without child elements or
    /// comments stay as they are.
    fn layout(&mut self, depth: usize, unit: &str, newline: &str, child: &mut dyn FnMut(&mut Element, usize)) {
        if self.elements().next().is_none() && !self.children.iter().any(|c| matches!(c, Node::Comment(_))) {
            return;
        }
        let indent = format!("{newline}{}", unit.repeat(depth));
        let close = format!("{newline}{}", unit.repeat(depth.saturating_sub(1)));
        let old = std::mem::take(&mut self.children);
        for n in old {
            match n {
                n if n.is_blank() => {}
                Node::Element(mut e) => {
                    child(&mut e, depth);
                    self.children.push(Node::Text(indent.clone()));
                    self.children.push(Node::Element(e));
                }
                other => {
                    self.children.push(Node::Text(indent.clone()));
                    self.children.push(other);
                }
            }
        }
        self.children.push(Node::Text(close));
    }

    /// Equal in meaning: same name, same attributes in any order, same child elements in
    /// order, same text; layout whitespace and comments do not count.
    pub fn same_as(&self, other: &Element) -> bool {
        if self.name != other.name || self.attrs.len() != other.attrs.len() {
            return false;
        }
        if !self.attrs.iter().all(|a| other.attr(&a.name) == Some(a.value.as_str())) {
            return false;
        }
        let mine: Vec<&Element> = self.elements().collect();
        let theirs: Vec<&Element> = other.elements().collect();
        mine.len() == theirs.len()
            && mine.iter().zip(&theirs).all(|(a, b)| a.same_as(b))
            && (!mine.is_empty() || self.text() == other.text())
    }
}

#[cfg(test)]
mod tests;
