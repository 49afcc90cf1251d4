//! Writing to stdout: JSON for scripts, text for people. A closed pipe (`| head`) is not an error.

use std::io::{self, IsTerminal, Write};

use serde::Serialize;
use vfioctl_core::check::{Check, Status};

use crate::error::CliError;

/// Writes text to stdout; a broken pipe ends quietly.
/// Writes text to stdout as a terminal may show it ([`terminal_safe`]).
pub fn print(text: &str) -> Result<(), CliError> {
    write_all(terminal_safe(text).as_bytes())
}

/// Text for a terminal: control characters from host data (names in sysfs and pci.ids,
/// lines of configuration files, domain names) are shown escaped (`\u{1b}`), so that a
/// snapshot or domain from someone else cannot move the cursor, retitle the window or hide
/// text. Line breaks (`\n`, and `\r\n` as a file written on Windows has them) and tabs stay,
/// and so do colour sequences (`ESC [ digits ; … m`, as `audit` writes them on a terminal),
/// which only change colour.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let harmless = |c: char, next: &str| c == '\n' || c == '\t' || (c == '\r' && next.starts_with('\n'));
    if !text.char_indices().any(|(i, c)| c.is_control() && !harmless(c, &text[i + c.len_utf8()..])) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' {
            let sgr = rest[1..].strip_prefix('[').and_then(|r| {
                let n = r.find(|x: char| !(x.is_ascii_digit() || x == ';'))?;
                (r[n..].starts_with('m')).then_some(n + 3)
            });
            if let Some(len) = sgr {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if c.is_control() && !harmless(c, &rest[c.len_utf8()..]) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

fn write_all(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(CliError::Output),
    }
}

/// Writes a value as pretty JSON with a trailing newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    // Serialised into one buffer and written at once: a single write, no copy for the newline.
    let mut buf = Vec::with_capacity(1 << 16);
    serde_json::to_writer_pretty(&mut buf, value).map_err(|e| CliError::Output(io::Error::other(e)))?;
    buf.push(b'\n');
    write_all(&buf)
}

/// Asks on the terminal; without one, the user must pass --yes.
pub fn confirm(question: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NeedsYes);
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(CliError::Output)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Counts of a list of checks by status (`check` and `verify`).
#[derive(Debug, Serialize)]
pub struct Summary {
    pass: usize,
    warn: usize,
    fail: usize,
    note: usize,
}

pub fn summary(checks: &[Check]) -> Summary {
    let n = |s| checks.iter().filter(|c| c.status == s).count();
    Summary { pass: n(Status::Pass), warn: n(Status::Warn), fail: n(Status::Fail), note: n(Status::Note) }
}

/// One line per check as `virt-host-validate` prints them, the remedy under each
/// non-passing one.
pub fn render_text(checks: &[Check], live: bool) -> String {
    let mut out = String::new();
    if !live {
        out.push_str("Checking a snapshot: device nodes and daemons are not checked.\n");
    }
    for c in checks {
        // A title longer than its column keeps a space before the verdict.
        let gap = if c.title.chars().count() >= 60 { " " } else { "" };
        out.push_str(&format!("{:>7}: Checking {:<60}{gap}: {}", c.area, c.title, c.status.label()));
        if !c.message.is_empty() {
            out.push_str(&format!(" ({})", c.message));
        }
        out.push('\n');
        if c.status != Status::Pass {
            if let Some(r) = &c.remedy {
                out.push_str(&format!("         fix: {r}\n"));
            }
        }
    }
    let s = summary(checks);
    out.push_str(&format!(
        "\n{} checks: {} passed, {} warnings, {} failed, {} notes.\n",
        checks.len(),
        s.pass,
        s.warn,
        s.fail,
        s.note
    ));
    out
}

/// Text read from a host or a journal, safe for a terminal: control characters (escape
/// sequences among them) are shown escaped (`\u{1b}`), tabs kept.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
}

/// Why `--out FILE` was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    #[error("refusing to write {}: it is {what}, not a regular file", path.display())]
    NotRegular { path: std::path::PathBuf, what: &'static str },
    #[error("cannot write {}: the directory {} does not exist", path.display(), dir.display())]
    NoDirectory { path: std::path::PathBuf, dir: std::path::PathBuf },
    #[error("cannot write {}: {err}", path.display())]
    Io { path: std::path::PathBuf, err: std::io::Error },
}

/// Writes `--out FILE`: only a regular file (or a new one), in a directory that exists
/// (relative names are relative to the working directory), atomically (a temporary file in
/// the same directory, synced, renamed over; a link is followed and its target replaced).
/// An existing file keeps its mode.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), OutError> {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io = |err| OutError::Io { path: path.to_path_buf(), err };
    let (target, mode) = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => (std::fs::canonicalize(path).map_err(io)?, Some(m.permissions().mode())),
        Ok(m) => {
            let t = m.file_type();
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else {
                "something else"
            };
            return Err(OutError::NotRegular { path: path.to_path_buf(), what });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (path.to_path_buf(), None),
        Err(e) => return Err(io(e)),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(OutError::NoDirectory { path: path.to_path_buf(), dir });
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.vfioctl-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a title longer than its column ran into the verdict ("…aaf8: FAIL").
    #[test]
    fn a_long_title_keeps_a_space_before_its_verdict() {
        let check = |title: &str| Check {
            id: "x".into(),
            area: "BOOT",
            title: title.into(),
            status: Status::Fail,
            message: String::new(),
            remedy: None,
        };
        let long = "the kernel command line for vfio-pci.ids=1002:687f,1002:aaf8,1002:ab38";
        let text = render_text(&[check(long), check("short")], true);
        assert!(text.contains("aaf8,1002:ab38 : FAIL"), "{text}");
        assert!(text.contains(&format!("{:<60}: FAIL", "short")), "{text}");
    }

    /// Regression: names and lines read from the host reached the terminal with their
    /// control characters, so a snapshot from someone else could inject escape sequences.
    #[test]
    fn host_text_cannot_drive_the_terminal() {
        assert_eq!(terminal_safe("GeForce\tGTX\n"), "GeForce\tGTX\n");
        assert_eq!(terminal_safe("evil\u{1b}]0;owned\u{7}name"), "evil\\u{1b}]0;owned\\u{7}name");
        assert_eq!(terminal_safe("\u{1b}[2J\u{1b}[1;31mred\u{1b}[0m\r"), "\\u{1b}[2J\u{1b}[1;31mred\u{1b}[0m\\u{d}");
        assert_eq!(terminal_safe("\u{1b}"), "\\u{1b}");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{9b}31m");
        // Regression: a domain with CRLF line ends came out of `audit --fix` and `domain --from`
        // with every `\r` as the text `\u{d}`, which libvirt refuses.
        assert_eq!(terminal_safe("<a/>\r\n<b/>\r\n"), "<a/>\r\n<b/>\r\n");
        assert_eq!(terminal_safe("ok\rhidden\r\n"), "ok\\u{d}hidden\r\n");
    }
}
