//! The plan: from a host and a request ("pass this GPU to a VM with 8 vCPUs and
//! 16 GiB"), everything the guides decide by hand, each decision explained.

pub mod pinning;
