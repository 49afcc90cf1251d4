//! PCI: addresses, ids, class codes, devices.

mod address;
mod device;
mod ids;
pub mod reset;

pub use address::{ParseAddressError, PciAddress};
pub use device::PciDevice;
pub use ids::{ClassCode, ParseVendorDeviceError, VendorDevice};
