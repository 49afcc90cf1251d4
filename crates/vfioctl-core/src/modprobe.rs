//! Reading modprobe configuration (`/etc/modprobe.d/*.conf`, modprobe.d(5)): the module
//! options and soft dependencies a module gets when it is next loaded.

use std::collections::BTreeMap;

use crate::pci::PciAddress;

/// What a set of modprobe.d files says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModprobeConfig {
    /// `options MODULE key=value …`, module names normalized to `_`, later files winning.
    pub options: BTreeMap<String, BTreeMap<String, String>>,
    /// `softdep MODULE pre: A B` → MODULE → [A, B].
    pub softdep_pre: BTreeMap<String, Vec<String>>,
    /// `blacklist MODULE`.
    pub blacklist: Vec<String>,
    /// `install MODULE COMMAND…`: the shell command modprobe runs instead of loading the
    /// module. The first one read wins, as kmod keeps the first.
    pub install: BTreeMap<String, String>,
}

/// Module names treat `-` and `_` alike; this is the `_` spelling.
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

impl ModprobeConfig {
    /// Adds one file's text. Files are applied in the order modprobe reads them
    /// (alphabetical across /etc/modprobe.d, /run/modprobe.d, /lib/modprobe.d).
    pub fn add(&mut self, text: &str) {
        let mut logical = String::new();
        for raw in text.lines() {
            // A trailing backslash continues the line.
            if let Some(head) = raw.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(raw);
            let line = std::mem::take(&mut logical);
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("options"), Some(m)) => {
                    let opts = self.options.entry(module_name(m)).or_default();
                    for w in words {
                        let (k, v) = w.split_once('=').unwrap_or((w, ""));
                        opts.insert(k.to_string(), v.trim_matches('"').to_string());
                    }
                }
                (Some("softdep"), Some(m)) => {
                    let mut pre = false;
                    for w in words {
                        match w {
                            "pre:" => pre = true,
                            "post:" => pre = false,
                            dep if pre => self.softdep_pre.entry(module_name(m)).or_default().push(module_name(dep)),
                            _ => {}
                        }
                    }
                }
                (Some("blacklist"), Some(m)) => self.blacklist.push(module_name(m)),
                (Some("install"), Some(m)) => {
                    let command: Vec<&str> = words.collect();
                    self.install.entry(module_name(m)).or_insert_with(|| command.join(" "));
                }
                _ => {}
            }
        }
    }

    /// The PCI addresses the `install` command of `module` hands to vfio-pci before the
    /// module loads: each `echo vfio-pci > /sys/bus/pci/devices/ADDRESS/driver_override`
    /// in it (the form `vfioctl apply` writes; a script it calls is not read).
    pub fn driver_overrides(&self, module: &str) -> Vec<PciAddress> {
        let Some(command) = self.install.get(&module_name(module)) else { return Vec::new() };
        command
            .split([';', '&', '|', '\n'])
            .filter_map(|step| {
                let spaced = step.replace('>', " > ");
                let words: Vec<&str> = spaced.split_whitespace().collect();
                let [echo, value, ">", path] = words.as_slice() else { return None };
                let value = value.trim_matches(|c| c == '"' || c == '\'');
                if *echo != "echo" || module_name(value) != "vfio_pci" {
                    return None;
                }
                let path = path.trim_matches(|c| c == '"' || c == '\'');
                path.strip_prefix("/sys/bus/pci/devices/")?.strip_suffix("/driver_override")?.parse().ok()
            })
            .collect()
    }

    /// The configured value of a module option, if any.
    pub fn option(&self, module: &str, key: &str) -> Option<&str> {
        self.options.get(&module_name(module)).and_then(|o| o.get(key)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guides_files() {
        let mut c = ModprobeConfig::default();
        c.add("options kvm ignore_msrs=1 report_ignored_msrs=0\noptions kvm_amd npt=1 nested=0 avic=1\n");
        c.add(
            "softdep nvidia pre: vfio vfio_pci\nsoftdep nouveau pre: vfio vfio_pci\n\
             #options vfio-pci ids=1002:7300\noptions vfio-pci ids=10de:1b06,10de:10ef disable_vga=1\n\
             options vhost_net \\\n  experimental_zcopytx=1\nblacklist nouveau\n",
        );
        assert_eq!(c.option("kvm", "ignore_msrs"), Some("1"));
        assert_eq!(c.option("kvm-amd", "avic"), Some("1"));
        assert_eq!(c.option("vfio_pci", "ids"), Some("10de:1b06,10de:10ef"));
        assert_eq!(c.option("vhost_net", "experimental_zcopytx"), Some("1"));
        assert_eq!(c.softdep_pre["nvidia"], ["vfio", "vfio_pci"]);
        assert_eq!(c.blacklist, ["nouveau"]);
    }

    #[test]
    fn install_commands_and_the_addresses_they_hand_to_vfio_pci() {
        let mut c = ModprobeConfig::default();
        c.add(
            "install vfio-pci echo vfio-pci > /sys/bus/pci/devices/0000:0b:00.1/driver_override; \\\n             echo \"vfio-pci\" >/sys/bus/pci/devices/0000:0b:00.0/driver_override; modprobe -i vfio-pci $CMDLINE_OPTS\n             install nvidia /usr/local/bin/override.sh; modprobe -i nvidia\n",
        );
        // A later file's install for the same module is not the one kmod runs.
        c.add("install vfio_pci /bin/true\n");
        let a: Vec<String> = c.driver_overrides("vfio_pci").iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["0000:0b:00.1", "0000:0b:00.0"]);
        assert!(c.driver_overrides("nvidia").is_empty(), "a script is not read");
        assert!(c.driver_overrides("amdgpu").is_empty());
        assert!(c.install["vfio_pci"].ends_with("modprobe -i vfio-pci $CMDLINE_OPTS"));
    }
}
