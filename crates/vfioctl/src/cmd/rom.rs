//! `vfioctl rom --check FILE [DEVICE]`: what a ROM file holds and whether QEMU can use it
//! for the card: its images (legacy x86, UEFI), their ids, a flash tool's header to cut.
//! The file is the user's (a path on this machine, not under `--root`); DEVICE is read
//! from the host.

use serde::Serialize;
use vfioctl_core::rom::{self, Image, Verdict};
use vfioctl_core::selector::Selector;
use vfioctl_host::host::Host;

use crate::cli::{Format, RomArgs};
use crate::error::{CliError, Exit};
use crate::output;

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    device: Option<String>,
    bytes: usize,
    header: usize,
    trailing: usize,
    images: &'a [Image],
    errors: &'a [String],
    warnings: &'a [String],
}

pub fn run(host: &Host, args: &RomArgs) -> Result<Exit, CliError> {
    let Some(check) = &args.check else { return dump(host, args) };
    let bytes = std::fs::read(check).map_err(|err| CliError::Input { path: check.clone(), err })?;
    let device = match args.device.as_deref() {
        Some(d) => {
            let s: Selector = d.parse().map_err(CliError::Selector)?;
            let inv = host.pci()?;
            Some(s.resolve(&inv.devices).map_err(CliError::Selector)?.clone())
        }
        None => None,
    };
    let parsed = match rom::parse(&bytes) {
        Ok(r) => r,
        // Not a ROM is an answer about the file: exit 1, like a ROM with errors.
        Err(e) => {
            let error = format!("{}: {e}", check.display());
            match args.format {
                Format::Json => output::print_json(&serde_json::json!({
                    "file": check.display().to_string(), "bytes": bytes.len(), "images": [], "errors": [error], "warnings": []
                }))?,
                Format::Text => output::print(&format!(
                    "error: {error}
"
                ))?,
            }
            return Ok(Exit::Finding);
        }
    };
    let Verdict { errors, mut warnings } = rom::judge(&parsed, device.as_ref().map(|d| (d.id.vendor, d.id.device)));
    let home = std::fs::canonicalize(check).unwrap_or_else(|_| check.clone());
    if home.starts_with("/home") {
        warnings.push(format!(
            "{} is under /home, where SELinux and AppArmor keep QEMU out: copy it to /usr/share/vgabios/ (root-owned, mode 0644) for <rom file>",
            home.display()
        ));
    }
    let report = Report {
        file: check.display().to_string(),
        device: device.as_ref().map(|d| d.address.to_string()),
        bytes: bytes.len(),
        header: parsed.header,
        trailing: parsed.trailing,
        images: &parsed.images,
        errors: &errors,
        warnings: &warnings,
    };
    match args.format {
        Format::Json => output::print_json(&report)?,
        Format::Text => output::print(&render(&report))?,
    }
    if let Some(out) = &args.out {
        let end = parsed.images.last().map_or(bytes.len(), |i| (i.offset + i.length).min(bytes.len()));
        output::write_file(out, &bytes[parsed.header..end]).map_err(CliError::Out)?;
        eprintln_safe!(
            "vfioctl: wrote {} ({} bytes: the images without {} bytes of header and {} of padding)",
            out.display(),
            end - parsed.header,
            parsed.header,
            bytes.len() - end
        );
        // What is left of the verdict once the header is cut.
        let cut = errors.iter().filter(|e| !e.contains("before the first image")).count();
        return Ok(if cut == 0 { Exit::Ok } else { Exit::Finding });
    }
    Ok(if errors.is_empty() { Exit::Ok } else { Exit::Finding })
}

/// `vfioctl rom DEVICE --out FILE`: the card's ROM read through sysfs, checked like a file,
/// written only when it is valid and the card's. Refused while a host driver drives the
/// card: the driver may have the ROM turned off or hold only a shadow copy, and reading
/// the ROM BAR under a running driver can hang the card.
fn dump(host: &Host, args: &RomArgs) -> Result<Exit, CliError> {
    let (Some(device), Some(out)) = (args.device.as_deref(), args.out.as_ref()) else {
        return Err(CliError::Usage("give the card and --out FILE (or --check FILE)".into()));
    };
    let s: Selector = device.parse().map_err(CliError::Selector)?;
    let inv = host.pci()?;
    let d = s.resolve(&inv.devices).map_err(CliError::Selector)?.clone();
    if let Some(driver) = d.driver.as_deref().filter(|drv| *drv != "vfio-pci") {
        return Err(CliError::Usage(format!(
            "{} is driven by {driver}: a host driver may have its ROM turned off or hold only a shadow copy, and reading the ROM under it can hang the card; read it while the card is on vfio-pci (after `vfioctl apply` and a reboot) or has no driver (`echo {} > /sys/bus/pci/devices/{}/driver/unbind`)",
            d.address.short(),
            d.address,
            d.address
        )));
    }
    let bytes = vfioctl_host::pci::read_rom(host.root(), d.address).map_err(|e| CliError::Unreadable {
        path: format!("/sys/bus/pci/devices/{}/rom", d.address),
        message: e.to_string(),
    })?;
    let from = format!("/sys/bus/pci/devices/{}/rom", d.address);
    let (images, errors, warnings, header, trailing) = match rom::parse(&bytes) {
        Ok(parsed) => {
            let Verdict { errors, warnings } = rom::judge(&parsed, Some((d.id.vendor, d.id.device)));
            (parsed.images, errors, warnings, parsed.header, parsed.trailing)
        }
        Err(e) => (Vec::new(), vec![format!("{from}: {e}")], Vec::new(), 0, 0),
    };
    let report = Report {
        file: from,
        device: Some(d.address.to_string()),
        bytes: bytes.len(),
        header,
        trailing,
        images: &images,
        errors: &errors,
        warnings: &warnings,
    };
    match args.format {
        Format::Json => output::print_json(&report)?,
        Format::Text => output::print(&render(&report))?,
    }
    if !errors.is_empty() {
        eprintln_safe!(
            "vfioctl: {} not written: the ROM read is not a usable ROM for {}",
            out.display(),
            d.address.short()
        );
        return Ok(Exit::Finding);
    }
    let end = images.last().map_or(bytes.len(), |i| (i.offset + i.length).min(bytes.len()));
    output::write_file(out, &bytes[header..end]).map_err(CliError::Out)?;
    eprintln_safe!(
        "vfioctl: wrote {} ({} bytes); QEMU reads ROM files from /usr/share/vgabios/ or /var/lib/libvirt/vbios/ under SELinux and AppArmor (root-owned, mode 0644); then `vfioctl domain … --rom {}`",
        out.display(),
        end - header,
        out.display()
    );
    Ok(Exit::Ok)
}

fn render(r: &Report<'_>) -> String {
    let mut out = format!("{}: {} bytes", r.file, r.bytes);
    if let Some(d) = &r.device {
        out.push_str(&format!(", for {d}"));
    }
    out.push('\n');
    if r.header > 0 {
        out.push_str(&format!("  header: {} bytes before the first image\n", r.header));
    }
    for (n, i) in r.images.iter().enumerate() {
        out.push_str(&format!(
            "  image {n}: offset {}, {} bytes, {:04x}:{:04x}, {}{}{}\n",
            i.offset,
            i.length,
            i.vendor,
            i.device,
            i.kind(),
            match i.checksum_ok {
                Some(false) => ", bad checksum",
                _ => "",
            },
            if i.last { ", last" } else { "" }
        ));
    }
    if r.trailing > 0 {
        out.push_str(&format!("  then {} bytes of padding\n", r.trailing));
    }
    for e in r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    for w in r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if r.errors.is_empty() {
        out.push_str("usable: <rom file='…'/> in the card's <hostdev>\n");
    }
    out
}
