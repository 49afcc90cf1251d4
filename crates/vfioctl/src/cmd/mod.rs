//! One module per subcommand.

mod apply;
mod audit;
mod check;
mod domain;
mod export;
mod list;
mod plan;
mod rom;
mod snapshot;
mod status;
mod topology;
mod verify;

use std::sync::Arc;

use vfioctl_host::host::Host;
use vfioctl_host::root::{HostRoot, ReadLog};
use vfioctl_host::snapshot as snap;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Exit};

/// Whether the command changes the host (apply but a dry run, rollback).
fn writes(command: &Command) -> bool {
    match command {
        Command::Apply(a) => !a.dry_run,
        Command::Rollback(_) => true,
        _ => false,
    }
}

/// The host root: a directory, or a snapshot archive unpacked into a temporary directory
/// that lives as long as the command.
fn open_root(cli: &Cli) -> Result<(HostRoot, Option<tempfile::TempDir>), CliError> {
    if cli.root.is_file() && snap::is_archive_name(&cli.root) {
        if writes(&cli.command) {
            return Err(CliError::ReadOnlyRoot(cli.root.clone()));
        }
        let tmp = tempfile::tempdir().map_err(CliError::Output)?;
        snap::unpack_tar_gz(&cli.root, tmp.path()).map_err(|e| CliError::Archive { path: cli.root.clone(), err: e })?;
        return Ok((HostRoot::new(tmp.path()), Some(tmp)));
    }
    Ok((HostRoot::new(&cli.root), None))
}

/// Runs the command on one read of the host. With `VFIOCTL_READ_LOG=FILE` in the
/// environment, what the command read of the host (each file, listing and program run,
/// with how often) is written to FILE at the end: the tests prove with it that no command
/// reads a host file twice.
pub fn run(cli: &Cli) -> Result<Exit, CliError> {
    let (root, _keep) = open_root(cli)?;
    let log_to = std::env::var_os("VFIOCTL_READ_LOG");
    let log = log_to.as_ref().map(|_| Arc::new(ReadLog::default()));
    let root = match &log {
        Some(l) => root.with_log(l.clone()),
        None => root,
    };
    if writes(&cli.command) && root.is_live() && !rustix::process::geteuid().is_root() {
        return Err(CliError::NeedsRoot);
    }
    let host = Host::new(root);
    let result = match &cli.command {
        Command::Check(args) => check::run(&host, args),
        Command::List(args) => list::run(host.root(), args),
        Command::Plan(args) => plan::run(&host, args),
        Command::Topology(args) => topology::run(&host, args),
        Command::Snapshot(args) => snapshot::run(host.root(), args),
        Command::Rollback(args) => status::rollback(host.root(), args),
        Command::Status(args) => status::status(host.root(), args),
        Command::History(args) => status::history(host.root(), args),
        Command::Apply(args) => apply::run(&host, args),
        Command::Audit(args) => audit::run(&host, args),
        Command::Verify(args) => verify::run(&host, args),
        Command::Domain(args) => domain::run(&host, args),
        Command::Export(args) => export::run(&host, args),
        Command::Rom(args) => rom::run(&host, args),
    };
    if let (Some(path), Some(log)) = (log_to, log) {
        let _ = std::fs::write(path, log.render());
    }
    result
}
