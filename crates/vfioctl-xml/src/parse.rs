//! A small, lossless XML reader: every byte of the input ends up in the tree, so
//! [`Document::write`](super::Document::write) gives the input back unchanged.
//!
//! It reads what libvirt writes and what people write by hand: the XML declaration,
//! comments, processing instructions, a DOCTYPE, CDATA, the five predefined entities
//! and character references. It is iterative (no recursion on nesting depth) and never
//! panics: malformed input is an [`XmlError`] with the line and column.

use super::{Attr, Document, Element, Node};

/// Malformed XML, with where it was noticed (1-based line and column in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct XmlError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Deeper nesting is refused: no domain comes near it, and the tree's recursive
/// writer and drop stay far from the stack's end.
const MAX_DEPTH: usize = 512;

struct Reader<'a> {
    src: &'a str,
    pos: usize,
    line_starts: Vec<usize>,
    /// Line, byte and column of the last [`Reader::line_col`].
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Reader { src, pos: 0, line_starts, last: std::cell::Cell::new((1, 0, 1)) }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn at(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    /// 1-based line and column (in characters) of byte `pos`. The reader moves forward,
    /// so each call starts from where the last one ended: linear over a whole document,
    /// even one on a single line.
    fn line_col(&self, pos: usize) -> (u32, u32) {
        let starts = &self.line_starts;
        let (mut line, last_pos, last_col) = self.last.get();
        let (line, from, col) = if last_pos <= pos && starts.get(line - 1).is_some_and(|&s| s <= pos) {
            let before = line;
            while starts.get(line).is_some_and(|&s| s <= pos) {
                line += 1;
            }
            if line == before {
                (line, last_pos, last_col)
            } else {
                (line, starts[line - 1], 1)
            }
        } else {
            let line = starts.partition_point(|&s| s <= pos).max(1);
            (line, starts.get(line - 1).copied().unwrap_or(0), 1)
        };
        let column = col + self.src.get(from..pos).map_or(0, |s| s.chars().count());
        self.last.set((line, pos, column));
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> XmlError {
        let (line, column) = self.line_col(pos);
        XmlError { line, column, message: message.into() }
    }

    fn error(&self, message: impl Into<String>) -> XmlError {
        self.error_at(self.pos, message)
    }

    /// Takes everything up to and including `end`, or fails naming what was open.
    fn take_through(&mut self, end: &str, what: &str, start: usize) -> Result<&'a str, XmlError> {
        match self.rest().find(end) {
            Some(i) => {
                let s = self.src.get(self.pos..self.pos + i + end.len()).unwrap_or("");
                self.pos += i + end.len();
                Ok(s)
            }
            None => Err(self.error_at(start, format!("{what} is never closed (no `{end}`)"))),
        }
    }

    fn whitespace(&mut self) -> &'a str {
        let rest = self.rest();
        let n = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        self.pos += n;
        rest.get(..n).unwrap_or("")
    }

    fn name(&mut self) -> Result<&'a str, XmlError> {
        let rest = self.rest();
        let n = rest
            .char_indices()
            .find(|&(i, c)| !is_name_char(c) || (i == 0 && !is_name_start(c)))
            .map_or(rest.len(), |(i, _)| i);
        if n == 0 {
            let found = rest.chars().next().map_or("the end of the input".to_string(), |c| format!("`{c}`"));
            return Err(self.error(format!("expected a name, found {found}")));
        }
        self.pos += n;
        Ok(rest.get(..n).unwrap_or(""))
    }

    /// Comments, processing instructions, CDATA and DOCTYPE, kept raw.
    fn markup(&mut self) -> Result<Option<Node>, XmlError> {
        let start = self.pos;
        if self.at("<!--") {
            self.pos += 4;
            let body = self.take_through("-->", "this comment", start)?;
            let inner = body.get(..body.len() - 3).unwrap_or("");
            if inner.contains("--") {
                return Err(self.error_at(start, "`--` inside a comment"));
            }
            return Ok(Some(Node::Comment(inner.to_string())));
        }
        if self.at("<![CDATA[") {
            self.take_through("]]>", "this CDATA section", start)?;
            return Ok(Some(Node::Raw(self.src.get(start..self.pos).unwrap_or("").to_string())));
        }
        if self.at("<?") {
            self.take_through("?>", "this processing instruction", start)?;
            return Ok(Some(Node::Raw(self.src.get(start..self.pos).unwrap_or("").to_string())));
        }
        if self.at("<!DOCTYPE") {
            // An internal subset in brackets may hold `>`.
            let mut depth = 0i32;
            for (i, c) in self.rest().char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    '>' if depth <= 0 => {
                        self.pos += i + 1;
                        return Ok(Some(Node::Raw(self.src.get(start..self.pos).unwrap_or("").to_string())));
                    }
                    _ => {}
                }
            }
            return Err(self.error_at(start, "the DOCTYPE is never closed"));
        }
        Ok(None)
    }

    /// `<name attr='v' …>` or `<name …/>`, after the `<`.
    fn start_tag(&mut self, start: usize) -> Result<Element, XmlError> {
        let name = self.name()?.to_string();
        let (line, column) = self.line_col(start);
        let mut el = Element::bare(name, line, column);
        loop {
            let space_start = self.pos;
            let space = self.whitespace();
            if self.at("/>") {
                self.pos += 2;
                el.tag_space = space.to_string();
                el.empty = true;
                return Ok(el);
            }
            if self.at(">") {
                self.pos += 1;
                el.tag_space = space.to_string();
                return Ok(el);
            }
            if self.rest().is_empty() {
                return Err(self.error_at(start, format!("the start tag of <{}> is never closed", el.name)));
            }
            if space.is_empty() {
                return Err(self.error("expected whitespace, `>` or `/>` after an attribute"));
            }
            let name_pos = self.pos;
            let name = self.name()?;
            self.whitespace();
            if !self.at("=") {
                return Err(self.error(format!("attribute `{name}` has no `=`")));
            }
            self.pos += 1;
            self.whitespace();
            let quote = match self.rest().chars().next() {
                Some(q @ ('\'' | '"')) => q,
                _ => return Err(self.error(format!("the value of `{name}` is not quoted"))),
            };
            self.pos += 1;
            let value_pos = self.pos;
            let Some(len) = self.rest().find(quote) else {
                return Err(self.error_at(value_pos, format!("the value of `{name}` is never closed")));
            };
            let raw_value = self.rest().get(..len).unwrap_or("");
            if let Some(i) = raw_value.find('<') {
                return Err(self.error_at(value_pos + i, format!("`<` in the value of `{name}`")));
            }
            let value = unescape(raw_value).map_err(|(i, m)| self.error_at(value_pos + i, m))?;
            self.pos += len + 1;
            if el.attrs.iter().any(|a| a.name == name) {
                return Err(self.error_at(name_pos, format!("attribute `{name}` appears twice")));
            }
            el.attrs.push(Attr {
                name: name.to_string(),
                value,
                raw: Some(self.src.get(space_start..self.pos).unwrap_or("").to_string()),
            });
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.') || c == '\u{b7}'
}

/// Decodes entity and character references; the error carries the byte offset.
pub(crate) fn unescape(raw: &str) -> Result<String, (usize, String)> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut offset = 0;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 1..).unwrap_or("");
        let Some(end) = after.find(';') else {
            return Err((offset + i, "`&` without `;` (write `&amp;` for a literal &)".into()));
        };
        let entity = after.get(..end).unwrap_or("");
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => return Err((offset + i, format!("unknown entity `&{entity};`"))),
        }
        let used = i + 1 + end + 1;
        rest = rest.get(used..).unwrap_or("");
        offset += used;
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a whole document.
pub fn parse(src: &str) -> Result<Document, XmlError> {
    let mut r = Reader::new(src);
    let mut before = Vec::new();
    // Prolog: whitespace (and a byte-order mark), declaration, comments, PIs, DOCTYPE.
    loop {
        let ws_start = r.pos;
        if r.at("\u{feff}") {
            r.pos += '\u{feff}'.len_utf8();
        }
        r.whitespace();
        if r.pos > ws_start {
            before.push(Node::Text(src.get(ws_start..r.pos).unwrap_or("").to_string()));
        }
        if r.rest().is_empty() {
            return Err(r.error("no root element"));
        }
        match r.markup()? {
            Some(n) => before.push(n),
            None => break,
        }
    }
    if !r.at("<") {
        return Err(r.error("text before the root element"));
    }
    // Content, with an explicit stack of open elements.
    let mut stack: Vec<Element> = Vec::new();
    let root = loop {
        let start = r.pos;
        let at_root_start = stack.is_empty();
        if r.at("</") {
            r.pos += 2;
            let name = r.name()?;
            let space = r.whitespace();
            if !r.at(">") {
                return Err(r.error(format!("expected `>` to close </{name}")));
            }
            r.pos += 1;
            let Some(mut el) = stack.pop() else {
                return Err(r.error_at(start, format!("</{name}> closes nothing")));
            };
            if el.name != name {
                return Err(r.error_at(
                    start,
                    format!("</{name}> closes <{}> opened at line {}, column {}", el.name, el.line, el.column),
                ));
            }
            el.end_space = space.to_string();
            // A grown Vec keeps room for 4; most elements have one or two children.
            el.children.shrink_to_fit();
            match stack.last_mut() {
                Some(parent) => parent.children.push(Node::Element(Box::new(el))),
                None => break el,
            }
        } else if r.at("<") && !at_root_start && (r.at("<!") || r.at("<?")) {
            let Some(node) = r.markup()? else {
                return Err(r.error("unknown markup after `<!`"));
            };
            if let Some(parent) = stack.last_mut() {
                parent.children.push(node);
            }
        } else if r.at("<") {
            r.pos += 1;
            let mut el = r.start_tag(start)?;
            el.attrs.shrink_to_fit();
            if el.empty {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(Box::new(el))),
                    None => break el,
                }
            } else if stack.len() >= MAX_DEPTH {
                return Err(r.error_at(start, format!("elements nested deeper than {MAX_DEPTH} levels")));
            } else {
                stack.push(el);
            }
        } else {
            let Some(parent) = stack.last_mut() else {
                return Err(r.error("text outside the root element"));
            };
            let len = r.rest().find('<').unwrap_or(r.rest().len());
            let text = r.rest().get(..len).unwrap_or("");
            if len == r.rest().len() {
                return Err(r.error_at(
                    r.src.len(),
                    format!(
                        "<{}> opened at line {}, column {} is never closed",
                        parent.name, parent.line, parent.column
                    ),
                ));
            }
            unescape(text).map_err(|(i, m)| r.error_at(start + i, m))?;
            parent.children.push(Node::Text(text.to_string()));
            r.pos += len;
        }
        if r.rest().is_empty() {
            if let Some(open) = stack.last() {
                return Err(XmlError {
                    line: open.line,
                    column: open.column,
                    message: format!("<{}> is never closed", open.name),
                });
            }
        }
    };
    let mut after = Vec::new();
    loop {
        let ws_start = r.pos;
        r.whitespace();
        if r.pos > ws_start {
            after.push(Node::Text(src.get(ws_start..r.pos).unwrap_or("").to_string()));
        }
        if r.rest().is_empty() {
            break;
        }
        match r.markup()? {
            Some(n) => after.push(n),
            None => return Err(r.error("content after the root element")),
        }
    }
    Ok(Document { before, root, after })
}

#[cfg(test)]
mod line_col_tests {
    use super::Reader;

    /// The cached walk gives what counting from the start gives, forward, backward, on
    /// one long line and across multi-byte characters.
    #[test]
    fn line_and_column_match_a_count_from_the_start() {
        let src = "<a>\n  <é x='ü'/><b/>\r\n\n<c>ünï</c><d/></a>";
        let naive = |pos: usize| {
            let before = &src[..pos];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            (line as u32, (src[start..pos].chars().count() + 1) as u32)
        };
        let positions: Vec<usize> = (0..=src.len()).filter(|p| src.is_char_boundary(*p)).collect();
        let r = Reader::new(src);
        for &p in positions.iter().chain(positions.iter().rev()).chain(positions.iter().step_by(3)) {
            assert_eq!(r.line_col(p), naive(p), "at byte {p}");
        }
    }
}
