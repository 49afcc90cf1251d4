//! Writing to stdout: JSON for scripts, text for people. A closed pipe (`| head`) is not an error.

use std::io::{self, IsTerminal, Write};

use serde::Serialize;
use vfioctl_core::check::{Check, Status};

use crate::error::CliError;

/// Writes text to stdout; a broken pipe ends quietly.
pub fn print(text: &str) -> Result<(), CliError> {
    write_all(text.as_bytes())
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
        out.push_str(&format!("{:>7}: Checking {:<60}: {}", c.area, c.title, c.status.label()));
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
