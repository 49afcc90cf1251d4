//! The one integration test binary: runs the built `vfioctl` against the example hosts,
//! this machine, and oracle tools (lspci, hwloc).

// Test helpers outside #[test] functions may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apply;
mod audit;
mod boot;
mod check;
mod corpus;
mod domain;
mod domains;
mod examples;
mod export;
mod libvirt;
mod list;
mod plan;
mod readme;
mod reads;
mod snapshot;
mod topology;
mod transaction;
mod util;
mod verify;
