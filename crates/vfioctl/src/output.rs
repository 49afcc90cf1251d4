//! Writing to stdout: JSON for scripts, text for people. A closed pipe (`| head`) is not an error.

use std::io::{self, Write};

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
