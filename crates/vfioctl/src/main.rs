//! `vfioctl`: turn a Linux host into a GPU/PCIe passthrough machine for libvirt/KVM.
//!
//! This binary parses arguments, builds the host root, calls the libraries and prints.
//! Exit codes: 0 success, 1 a finding or refusal the user can act on, 2 a usage or
//! environment error (see README.md).

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
