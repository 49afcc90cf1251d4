//! One module per subcommand.

mod apply;
mod audit;
mod check;
mod domain;
mod export;
mod list;
mod plan;
mod snapshot;
mod status;
mod topology;
mod verify;

use vfioctl_host::root::HostRoot;
use vfioctl_host::snapshot as snap;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Exit};

/// The host root: a directory, or a snapshot archive unpacked into a temporary directory
/// that lives as long as the command.
fn open_root(cli: &Cli) -> Result<(HostRoot, Option<tempfile::TempDir>), CliError> {
    if cli.root.is_file() && snap::is_archive_name(&cli.root) {
        let tmp = tempfile::tempdir().map_err(CliError::Output)?;
        snap::unpack_tar_gz(&cli.root, tmp.path()).map_err(|e| CliError::Archive { path: cli.root.clone(), err: e })?;
        return Ok((HostRoot::new(tmp.path()), Some(tmp)));
    }
    Ok((HostRoot::new(&cli.root), None))
}

pub fn run(cli: &Cli) -> Result<Exit, CliError> {
    let (root, _keep) = open_root(cli)?;
    match &cli.command {
        Command::Check(args) => check::run(&root, args),
        Command::List(args) => list::run(&root, args),
        Command::Plan(args) => plan::run(&root, args),
        Command::Topology(args) => topology::run(&root, args),
        Command::Snapshot(args) => snapshot::run(&root, args),
        Command::Rollback(args) => status::rollback(&root, args),
        Command::Status(args) => status::status(&root, args),
        Command::Apply(args) => apply::run(&root, args),
        Command::Audit(args) => audit::run(&root, args),
        Command::Verify(args) => verify::run(&root, args),
        Command::Domain(args) => domain::run(&root, args),
        Command::Export(args) => export::run(&root, args),
    }
}
