//! `vfioctl topology`.

use vfioctl_host::root::HostRoot;

use crate::cli::TopologyArgs;
use crate::error::{CliError, Exit};

pub fn run(_root: &HostRoot, _args: &TopologyArgs) -> Result<Exit, CliError> {
    Ok(Exit::Ok)
}
