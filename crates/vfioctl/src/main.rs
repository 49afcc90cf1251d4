//! `vfioctl`: turn a Linux host into a GPU/PCIe passthrough machine for libvirt/KVM.
//!
//! This binary parses arguments, builds the host root, calls the libraries and prints.
//! Exit codes: 0 success, 1 a finding or refusal the user can act on, 2 a usage or
//! environment error (see README.md).

/// `eprintln!` for messages that carry host data: written [`output::terminal_safe`].
macro_rules! eprintln_safe {
    ($($t:tt)*) => {
        eprintln!("{}", $crate::output::terminal_safe(&format!($($t)*)))
    };
}

mod cli;
mod cmd;
mod error;
mod ops;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(&cli) {
        Ok(code) => code.into(),
        Err(e) => {
            error::report(&e);
            e.exit_code().into()
        }
    }
}
