//! Editing libvirt's `/etc/libvirt/qemu.conf`: the `cgroup_device_acl` list of devices a
//! guest's QEMU may open, which evdev handed over by `<qemu:commandline>` (`-object
//! input-linux,evdev=…`, libvirt before 7.4) needs, since libvirt does not know about it.
//!
//! The syntax is libvirt's `virconf`: `name = value` statements separated by line breaks
//! or `;`, `#` comments (whole lines, or after a value), values that are numbers, strings
//! (`"…"` or `'…'` on one line, `"""…"""` across lines, no escapes) and lists
//! `[ value, … ]` whose items may span lines and may end with a comma, but hold no
//! comments. When a name appears twice, libvirt uses the first one.
//!
//! - The whole file is read by those rules first; a file libvirt could not read either is
//!   refused (nothing after the error can be trusted), and so is a first
//!   `cgroup_device_acl` that is not a list of strings.
//! - With an active `cgroup_device_acl` (the first one), the missing paths go inside it,
//!   after its last item and before the `]`, in the list's style: one per line with the
//!   last item's indentation when the list spans lines, `, "…"` on one line otherwise; a
//!   trailing comma stays a trailing comma. Every other byte stays.
//! - Without one, a comment line and a list of libvirt's default devices
//!   ([`DEFAULT_ACL`], which setting the list replaces) plus the paths are appended.
//! - Commented-out lines (the stock file's `#cgroup_device_acl = [` block) and every
//!   other setting (`user = "root"` included) are never touched.

use super::EditError;

/// The file, for messages.
const WHAT: &str = "/etc/libvirt/qemu.conf";
/// The setting.
/// Where libvirt's QEMU driver reads this file.
pub const PATH: &str = "/etc/libvirt/qemu.conf";

pub const KEY: &str = "cgroup_device_acl";
/// libvirt's built-in list (`defaultDeviceACL`, qemu_cgroup.c) of the 6.x to 9.x releases
/// (older ones also had `/dev/kqemu`, `/dev/rtc` and `/dev/hpet`, later ones add
/// `/dev/userfaultfd`): setting `cgroup_device_acl` replaces it, so a new list starts with
/// it. Only releases before 7.4 need this edit.
pub const DEFAULT_ACL: [&str; 7] =
    ["/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx", "/dev/kvm"];
/// The comment before a list vfioctl appends.
pub const COMMENT: &str =
    "# Added by vfioctl: libvirt's defaults plus the evdev devices QEMU opens for qemu:commandline (input-linux).";

/// Lists nested deeper than this are refused (libvirt has no limit; real files have 1).
const MAX_DEPTH: usize = 32;

/// One value and its byte span (quotes and brackets included).
#[derive(Debug)]
struct Item {
    start: usize,
    end: usize,
    value: Value,
}

#[derive(Debug)]
enum Value {
    /// `None` when it does not fit an `i64` (libvirt refuses those too).
    Number(Option<i64>),
    Str(String),
    /// `open` is the `[`, `close` the `]`.
    List {
        open: usize,
        close: usize,
        items: Vec<Item>,
    },
}

/// One active `name = value` statement.
#[derive(Debug)]
struct Entry {
    name: String,
    value: Item,
}

/// Why the file does not parse: the line and what libvirt would say.
#[derive(Debug)]
struct SyntaxError {
    line: usize,
    what: &'static str,
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn cur(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn blanks(&mut self) {
        while matches!(self.cur(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn blanks_and_eol(&mut self) {
        while matches!(self.cur(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn skip_to_eol(&mut self) {
        while !matches!(self.cur(), None | Some(b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn error(&self, what: &'static str) -> SyntaxError {
        let at = self.i.min(self.b.len());
        SyntaxError { line: 1 + self.b[..at].iter().filter(|&&c| c == b'\n').count(), what }
    }

    /// A string; `self.i` is at its opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let q = self.b[self.i];
        if q == b'"' && self.i + 6 < self.b.len() && self.b[self.i..].starts_with(b"\"\"\"") {
            let from = self.i + 3;
            let Some(len) = self.text[from..].find("\"\"\"") else { return Err(self.error("unterminated string")) };
            self.i = from + len + 3;
            return Ok(self.text[from..from + len].to_string());
        }
        let from = self.i + 1;
        self.i = from;
        while !matches!(self.cur(), None | Some(b'\n' | b'\r')) && self.cur() != Some(q) {
            self.i += 1;
        }
        if self.cur() != Some(q) {
            return Err(self.error("unterminated string"));
        }
        self.i += 1;
        Ok(self.text[from..self.i - 1].to_string())
    }

    fn value(&mut self, depth: usize) -> Result<Item, SyntaxError> {
        self.blanks();
        let start = self.i;
        let value = match self.cur() {
            Some(b'"' | b'\'') => Value::Str(self.string()?),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("lists nested too deep"));
                }
                self.i += 1;
                self.blanks_and_eol();
                let mut items = Vec::new();
                if self.cur().is_some_and(|c| c != b']') {
                    items.push(self.value(depth + 1)?);
                    self.blanks_and_eol();
                }
                while self.cur().is_some_and(|c| c != b']') {
                    if self.cur() != Some(b',') {
                        return Err(self.error("expecting a separator in list"));
                    }
                    self.i += 1;
                    self.blanks_and_eol();
                    if self.cur() == Some(b']') {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.blanks_and_eol();
                }
                if self.cur() != Some(b']') {
                    return Err(self.error("list is not closed with ]"));
                }
                self.i += 1;
                Value::List { open: start, close: self.i - 1, items }
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                if !c.is_ascii_digit() {
                    self.i += 1;
                }
                if !self.cur().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.error("unterminated number"));
                }
                while self.cur().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let digits = self.text.get(start..self.i).unwrap_or("");
                Value::Number(digits.strip_prefix('+').unwrap_or(digits).parse().ok())
            }
            _ => return Err(self.error("expecting a value")),
        };
        Ok(Item { start, end: self.i, value })
    }

    /// Every active statement, in order.
    fn file(mut self) -> Result<Vec<Entry>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            self.blanks_and_eol();
            match self.cur() {
                None => break,
                Some(b'#') => self.skip_to_eol(),
                Some(c) if c.is_ascii_alphabetic() => {
                    let from = self.i;
                    while self.cur().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                        self.i += 1;
                    }
                    let name = self.text[from..self.i].to_string();
                    self.blanks();
                    if self.cur() != Some(b'=') {
                        return Err(self.error("expecting an assignment"));
                    }
                    self.i += 1;
                    let value = self.value(0)?;
                    self.blanks();
                    if self.cur() == Some(b'#') {
                        self.skip_to_eol();
                    }
                    out.push(Entry { name, value });
                }
                Some(_) => return Err(self.error("expecting a name")),
            }
            self.blanks();
            match self.cur() {
                None | Some(b'\n' | b'\r') => {}
                Some(b';') => self.i += 1,
                Some(_) => return Err(self.error("expecting a separator")),
            }
        }
        Ok(out)
    }
}

fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    Parser { text, b: text.as_bytes(), i: 0 }.file()
}

/// The active `cgroup_device_acl` (the first one, the one libvirt reads): `None` when
/// there is none (libvirt uses its built-in list) or libvirt could not read it (the file
/// does not parse, or the value is not a list of strings).
pub fn device_acl(text: &str) -> Option<Vec<String>> {
    let entries = parse(text).ok()?;
    match &entries.iter().find(|e| e.name == KEY)?.value.value {
        Value::List { items, .. } => items
            .iter()
            .map(|i| match &i.value {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The value of the first active string setting `name` (`user`, `group`), `None` when it
/// is not set (or the file does not parse, or the value is not a string).
pub fn string_setting(text: &str, name: &str) -> Option<String> {
    match parse(text).ok()?.into_iter().find(|e| e.name == name)?.value.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// The value of the first active `name = <number>` setting (`None` when unset, not a
/// number, or the file does not parse).
pub fn number_setting(text: &str, name: &str) -> Option<i64> {
    match parse(text).ok()?.into_iter().find(|e| e.name == name)?.value.value {
        Value::Number(n) => n,
        _ => None,
    }
}

fn unsupported(reason: String) -> EditError {
    EditError::Unsupported { what: WHAT.to_string(), reason }
}

/// The leading blanks of the line holding byte `at`.
fn indent_of(text: &str, at: usize) -> &str {
    let start = text[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// Adds `paths` to the active `cgroup_device_acl` of qemu.conf `text` (`""` when the file
/// does not exist), by the rules of the module docs. Paths already listed are left alone.
pub fn add_device_acl(text: &str, paths: &[String]) -> Result<String, EditError> {
    for p in paths {
        if !p.starts_with('/') || p.contains(['"', '\'', '\n', '\r']) {
            return Err(unsupported(format!(
                "{p:?} cannot go in cgroup_device_acl: it needs an absolute path without quotes or line breaks"
            )));
        }
    }
    let entries = parse(text).map_err(|e| {
        unsupported(format!("line {}: {}; libvirt cannot read the file either: fix it by hand", e.line, e.what))
    })?;
    if paths.is_empty() {
        return Ok(text.to_string());
    }
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let Some(entry) = entries.iter().find(|e| e.name == KEY) else {
        return Ok(append_list(text, paths, nl));
    };
    let Value::List { open, close, items } = &entry.value.value else {
        return Err(unsupported(format!("{KEY} is not a list; libvirt refuses it: fix it by hand")));
    };
    let mut present = Vec::new();
    for i in items {
        match &i.value {
            Value::Str(s) => present.push(s.as_str()),
            _ => return Err(unsupported(format!("{KEY} holds something else than strings; libvirt refuses it"))),
        }
    }
    let mut missing: Vec<&str> = Vec::new();
    for p in paths {
        if !present.contains(&p.as_str()) && !missing.contains(&p.as_str()) {
            missing.push(p);
        }
    }
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let (open, close) = (*open, *close);
    let b = text.as_bytes();
    // A trailing comma after the last item: the first non-blank byte after it.
    let comma = items.last().and_then(|last| {
        let mut k = last.end;
        while k < close && matches!(b[k], b' ' | b'\t' | b'\n' | b'\r') {
            k += 1;
        }
        (b[k] == b',').then_some(k)
    });
    let multiline = text[open..close].contains(['\n', '\r']);
    let (at, new) = if multiline {
        let indent = match items.last() {
            Some(last) if text[open..last.start].contains(['\n', '\r']) => indent_of(text, last.start).to_string(),
            _ => format!("{}    ", indent_of(text, open)),
        };
        let line = |p: &str| format!("{nl}{indent}\"{p}\"");
        match (items.last(), comma) {
            (Some(_), Some(c)) => (c + 1, missing.iter().map(|p| format!("{},", line(p))).collect::<String>()),
            (Some(last), None) => (last.end, missing.iter().map(|p| format!(",{}", line(p))).collect()),
            (None, _) => (open + 1, missing.iter().map(|p| line(p)).collect::<Vec<_>>().join(",")),
        }
    } else {
        match (items.last(), comma) {
            (Some(_), Some(c)) => (c + 1, missing.iter().map(|p| format!(" \"{p}\",")).collect::<String>()),
            (Some(last), None) => (last.end, missing.iter().map(|p| format!(", \"{p}\"")).collect()),
            (None, _) => {
                let list = missing.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
                let pad = if close > open + 1 { " " } else { "" };
                (close, format!("{list}{pad}"))
            }
        }
    };
    Ok(format!("{}{new}{}", &text[..at], &text[at..]))
}

/// `text` with [`COMMENT`] and a new list of libvirt's defaults plus `paths` appended.
fn append_list(text: &str, paths: &[String], nl: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() {
        if !out.ends_with(['\n', '\r']) {
            out.push_str(nl);
        }
        if !(out.ends_with("\n\n") || out.ends_with("\n\r\n") || out == nl) {
            out.push_str(nl);
        }
    }
    let mut extra: Vec<&str> = Vec::new();
    for p in paths {
        if !DEFAULT_ACL.contains(&p.as_str()) && !extra.contains(&p.as_str()) {
            extra.push(p);
        }
    }
    let q = |l: &[&str]| l.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let mut lines = vec![q(&DEFAULT_ACL[..3]), q(&DEFAULT_ACL[3..5]), q(&DEFAULT_ACL[5..])];
    lines.extend(extra.iter().map(|p| format!("\"{p}\"")));
    out.push_str(COMMENT);
    out.push_str(nl);
    out.push_str(&format!("{KEY} = ["));
    out.push_str(nl);
    out.push_str(&lines.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join(&format!(",{nl}")));
    out.push_str(nl);
    out.push(']');
    out.push_str(nl);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::v;

    const KBD: &str = "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd";
    const MOUSE: &str = "/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse";

    fn evdev() -> Vec<String> {
        v(&[KBD, MOUSE])
    }

    fn twice(text: &str, paths: &[String]) -> String {
        let once =
            fuzzgen::idempotent(|t: Option<&str>, p: &[String]| add_device_acl(t.unwrap_or(""), p), Some(text), paths);
        let acl = device_acl(&once).unwrap_or_default();
        assert!(paths.iter().all(|p| acl.contains(p)), "{acl:?}");
        once
    }

    /// libvirt's qemu.conf template (src/qemu/qemu.conf.in): the user examples and the
    /// commented-out default list, as distributions ship it.
    const STOCK: &str = r#"# Master configuration file for the QEMU driver.
# All settings described here are optional - if omitted, sensible
# defaults are used.

# Some examples of valid values are:
#
#       user = "qemu"   # A user named "qemu"
#       user = "+0"     # Super user (uid=0)
#       user = "100"    # A user named "100" or a user with uid=100
#
#user = "libvirt-qemu"

# This is the basic set of devices allowed / required by
# all virtual machines.
#
# As well as this, any configured block backed disks,
# all sound device, and all PTY devices are allowed.
#
# This will only need setting if newer QEMU suddenly
# wants some device we don't already know about.
#
#cgroup_device_acl = [
#    "/dev/null", "/dev/full", "/dev/zero",
#    "/dev/random", "/dev/urandom",
#    "/dev/ptmx", "/dev/kvm",
#    "/dev/userfaultfd"
#]
#
# RDMA migration requires the following extra files to be added to the list:
#   "/dev/infiniband/rdma_cm",
#   "/dev/infiniband/issm0",

#seccomp_sandbox = 1
"#;

    /// The guide's edited file (examples/hosts/r2600x/etc/libvirt/qemu.conf).
    const GUIDE: &str = r#"# Master configuration file for the QEMU driver.
# All settings described here are optional - if omitted, sensible
# defaults are used.

user = "root"
group = "root"
clear_emulator_capabilities = 0

cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero",
    "/dev/random", "/dev/urandom",
    "/dev/ptmx", "/dev/kvm", "/dev/kqemu",
    "/dev/rtc","/dev/hpet",
    "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd",
    "/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse"
]
"#;

    const NEW_LIST: &str = "cgroup_device_acl = [
    \"/dev/null\", \"/dev/full\", \"/dev/zero\",
    \"/dev/random\", \"/dev/urandom\",
    \"/dev/ptmx\", \"/dev/kvm\",
    \"/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd\",
    \"/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse\"
]
";

    #[test]
    fn stock_file_gains_a_list_at_the_end_and_keeps_the_commented_one() {
        assert_eq!(device_acl(STOCK), None);
        let out = twice(STOCK, &evdev());
        assert_eq!(out, format!("{STOCK}\n{COMMENT}\n{NEW_LIST}"));
        let acl = device_acl(&out).unwrap();
        assert_eq!(&acl[..7], &DEFAULT_ACL);
        assert_eq!(acl.len(), 9);
        assert_eq!(string_setting(&out, "user"), None, "a commented user stays commented");
    }

    #[test]
    fn empty_or_missing_file() {
        assert_eq!(twice("", &evdev()), format!("{COMMENT}\n{NEW_LIST}"));
        assert_eq!(twice("", &[]), "");
        // A path that is one of the defaults is not listed twice.
        let out = twice("", &v(&["/dev/kvm", KBD, KBD]));
        assert_eq!(out.matches("/dev/kvm").count(), 1);
        assert_eq!(out.matches(KBD).count(), 1);
    }

    #[test]
    fn guide_list_is_complete_already_and_gains_new_devices_one_per_line() {
        assert_eq!(twice(GUIDE, &evdev()), GUIDE);
        assert_eq!(string_setting(GUIDE, "user").as_deref(), Some("root"));
        let other = v(&[KBD, "/dev/input/by-id/usb-Razer-event-mouse"]);
        assert_eq!(
            twice(GUIDE, &other),
            GUIDE.replace(
                "-if01-event-mouse\"\n]",
                "-if01-event-mouse\",\n    \"/dev/input/by-id/usb-Razer-event-mouse\"\n]"
            )
        );
        assert_eq!(device_acl(GUIDE).unwrap().len(), 12);
    }

    #[test]
    fn trailing_comma_stays_and_indentation_follows_the_last_item() {
        let text = "user = \"root\"\ncgroup_device_acl = [\n\t\"/dev/null\",\n\t\"/dev/kvm\",\n]\n";
        assert_eq!(
            twice(text, &v(&[KBD])),
            text.replace("\"/dev/kvm\",\n]", &format!("\"/dev/kvm\",\n\t\"{KBD}\",\n]"))
        );
        // Items on the line of the `[`: the next level of the `[` line's indentation.
        let text = "  cgroup_device_acl = [ \"/dev/null\"\n  ]\n";
        assert_eq!(twice(text, &v(&["/dev/a"])), "  cgroup_device_acl = [ \"/dev/null\",\n      \"/dev/a\"\n  ]\n");
        // An empty list over two lines.
        assert_eq!(
            twice("cgroup_device_acl = [\n]\n", &v(&["/dev/a", "/dev/b"])),
            "cgroup_device_acl = [\n    \"/dev/a\",\n    \"/dev/b\"\n]\n"
        );
        // CRLF files get CRLF lines.
        let text = "cgroup_device_acl = [\r\n    \"/dev/null\"\r\n]\r\n";
        assert_eq!(
            twice(text, &v(&["/dev/a"])),
            "cgroup_device_acl = [\r\n    \"/dev/null\",\r\n    \"/dev/a\"\r\n]\r\n"
        );
    }

    #[test]
    fn single_line_lists() {
        let one = |t: &str| twice(t, &v(&["/dev/a", "/dev/b"]));
        assert_eq!(
            one("cgroup_device_acl = [ \"/dev/null\", '/dev/kvm' ] # mine\n"),
            "cgroup_device_acl = [ \"/dev/null\", '/dev/kvm', \"/dev/a\", \"/dev/b\" ] # mine\n"
        );
        assert_eq!(
            one("cgroup_device_acl=[\"/dev/null\",]"),
            "cgroup_device_acl=[\"/dev/null\", \"/dev/a\", \"/dev/b\",]"
        );
        assert_eq!(one("cgroup_device_acl = []"), "cgroup_device_acl = [\"/dev/a\", \"/dev/b\"]");
        assert_eq!(
            one("cgroup_device_acl = [ ]; user = 'root'"),
            "cgroup_device_acl = [ \"/dev/a\", \"/dev/b\" ]; user = 'root'"
        );
        assert_eq!(one("cgroup_device_acl = [ \"/dev/b\" ]"), "cgroup_device_acl = [ \"/dev/b\", \"/dev/a\" ]");
    }

    #[test]
    fn first_active_list_counts_and_comments_are_never_touched() {
        let text = "#cgroup_device_acl = [ \"/dev/null\" ]\ncgroup_device_acl = [ \"/dev/x\" ]\ncgroup_device_acl = [ \"/dev/y\" ]\n";
        assert_eq!(device_acl(text), Some(v(&["/dev/x"])));
        assert_eq!(twice(text, &v(&["/dev/y"])), text.replace("[ \"/dev/x\" ]", "[ \"/dev/x\", \"/dev/y\" ]"));
        // Strings may hold `#`, `[` and `]`; triple-quoted ones span lines.
        let text = "vnc_password = \"#[x]\"\nx = \"\"\"\ncgroup_device_acl = [ ]\n\"\"\"\n";
        assert_eq!(device_acl(text), None);
        assert_eq!(
            twice(text, &v(&["/dev/a"])),
            format!("{text}\n{COMMENT}\n{}", NEW_LIST.replace(&format!("\"{KBD}\",\n    \"{MOUSE}\""), "\"/dev/a\""))
        );
    }

    #[test]
    fn refuses_what_libvirt_refuses() {
        for bad in [
            "cgroup_device_acl = [ \"/dev/null\" # no comments in lists\n]",
            "cgroup_device_acl = [ \"/dev/null\"",
            "cgroup_device_acl = \"/dev/null\"",
            "cgroup_device_acl = [ 1 ]",
            "user = \"root",
            "user \"root\"",
            "= 1",
            "a = 1 b = 2",
        ] {
            assert!(add_device_acl(bad, &v(&["/dev/a"])).is_err(), "{bad:?}");
            assert_eq!(device_acl(bad), None, "{bad:?}");
        }
        for bad in ["dev/a", "/dev/\"a", "/dev/a\nb", ""] {
            assert!(add_device_acl("", &v(&[bad])).is_err(), "{bad:?}");
        }
        // Nothing to add: a broken file is still refused (it cannot be read at all).
        assert!(add_device_acl("x = [", &[]).is_err());
    }

    #[test]
    fn numbers_separators_and_nested_lists_parse() {
        let text = "max_files = -1; seccomp_sandbox = +0\nnvram = [ [ \"a\" ], ]\ncgroup_device_acl = [\n  \"/dev/null\"\n  ,\n]\n";
        assert_eq!(device_acl(text), Some(v(&["/dev/null"])));
        assert_eq!(twice(text, &v(&["/dev/a"])), text.replace("  ,\n]", "  ,\n  \"/dev/a\",\n]"));
    }

    #[test]
    fn never_panics() {
        let words = [
            "cgroup_device_acl",
            " = ",
            "[",
            "]",
            "\"/dev/null\"",
            "\"/dev/a\"",
            "'/dev/b'",
            "\"\"\"",
            ";",
            "# c\n",
            "user = \"root\"\n",
            "1",
            "-",
        ];
        let paths = v(&["/dev/a", "/dev/b"]);
        let check = |s: &str| {
            if let Ok(once) = add_device_acl(s, &paths) {
                assert_eq!(add_device_acl(&once, &paths).as_deref(), Ok(once.as_str()), "{s:?}");
                let acl = device_acl(&once).unwrap_or_default();
                assert!(paths.iter().all(|p| acl.contains(p)), "{s:?} → {once:?}");
                // Only an insertion: what precedes and follows it is the text as it was.
                let (a, b) = (s.as_bytes(), once.as_bytes());
                let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                let tail = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
                assert!(b == a || head + tail >= a.len(), "{s:?} → {once:?}");
            }
            let _ = string_setting(s, "user");
        };
        for s in fuzzgen::strings(0x5eed_ac10, 4000, 24, &words) {
            check(&s);
        }
        // Well-formed files too, so that lists get edited in every layout.
        let mut rng = fuzzgen::Rng::new(7);
        let items = ["\"/dev/null\"", "'/dev/kvm'", "\"/dev/a\"", "\"/dev/b\"", "\"#\""];
        let gaps = ["", " ", "\n", "\n    ", "\r\n\t", " \n "];
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..rng.below(4) {
                match rng.below(4) {
                    0 => s.push_str("# cgroup_device_acl = [ \"/dev/x\" ]\n"),
                    1 => s.push_str("user = \"root\"; x = 1\n"),
                    _ => {
                        s.push_str("cgroup_device_acl = [");
                        let n = rng.below(4);
                        for k in 0..n {
                            s.push_str(gaps[rng.below(gaps.len())]);
                            s.push_str(items[rng.below(items.len())]);
                            if k + 1 < n || rng.below(2) == 0 {
                                s.push_str(gaps[rng.below(2)]);
                                s.push(',');
                            }
                        }
                        s.push_str(gaps[rng.below(gaps.len())]);
                        s.push_str(if rng.below(2) == 0 { "]\n" } else { "] # x\n" });
                    }
                }
            }
            assert!(parse(&s).is_ok(), "{s:?}");
            check(&s);
        }
    }
}
