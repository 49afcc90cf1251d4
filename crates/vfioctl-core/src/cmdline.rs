//! The kernel command line: `key=value` parameters and bare flags, as in `/proc/cmdline`,
//! `GRUB_CMDLINE_LINUX` or a systemd-boot `options` line.
//!
//! The kernel splits on spaces outside double quotes, and treats `-` and `_` alike in
//! parameter names (`vfio-pci.ids` is `vfio_pci.ids`); [`Param::name_is`] compares that way.

use std::fmt;

/// One parameter: `name` or `name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// A size as the kernel's `memparse` reads it (`1G`, `2M`, `2048K`, bytes), in KiB.
fn mem_kib(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last()? {
        (i, 'G' | 'g') => (&v[..i], 1 << 20),
        (i, 'M' | 'm') => (&v[..i], 1 << 10),
        (i, 'K' | 'k') => (&v[..i], 1),
        _ => return v.parse::<u64>().ok().map(|b| b / 1024),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl Param {
    /// Whether this parameter's name is `name`, with `-` and `_` taken as equal.
    pub fn name_is(&self, name: &str) -> bool {
        normalize(&self.name) == normalize(name)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) if v.contains(' ') => write!(f, "{}=\"{}\"", self.name, v),
            Some(v) => write!(f, "{}={}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// A parsed command line, parameters in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub params: Vec<Param>,
}

impl Cmdline {
    /// Parses a command line. Never fails: an unterminated quote runs to the end.
    pub fn parse(text: &str) -> Cmdline {
        let mut params = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        let mut any = false;
        let mut flush = |word: &mut String, any: &mut bool| {
            if *any {
                let (name, value) = match word.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (word.clone(), None),
                };
                params.push(Param { name, value });
            }
            word.clear();
            *any = false;
        };
        for c in text.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                c if c.is_whitespace() && !quoted => flush(&mut word, &mut any),
                c => {
                    word.push(c);
                    any = true;
                }
            }
        }
        flush(&mut word, &mut any);
        Cmdline { params }
    }

    /// The size of hugepages that `hugepages=` and `vm.nr_hugepages` count, in KiB:
    /// `default_hugepagesz=` (the last one) or 2 MiB.
    pub fn default_hugepage_kib(&self) -> u64 {
        self.values("default_hugepagesz").last().and_then(|v| mem_kib(v)).unwrap_or(2048)
    }

    /// The hugepages the kernel reserves at boot, as it reads them: each `hugepages=`
    /// counts pages of the size the `hugepagesz=` before it names (else the default size);
    /// `hugepages=N:C,M:D` counts per node. (size in KiB, pages) per `hugepages=`.
    pub fn boot_hugepages(&self) -> Vec<(u64, u64)> {
        let default = self.default_hugepage_kib();
        let mut size = None;
        let mut out = Vec::new();
        for p in &self.params {
            if p.name_is("hugepagesz") {
                size = p.value.as_deref().and_then(mem_kib);
            } else if p.name_is("hugepages") {
                let v = p.value.as_deref().unwrap_or("");
                let count: u64 = v
                    .split(',')
                    .map(|part| part.rsplit(':').next().unwrap_or(part).trim().parse::<u64>().unwrap_or(0))
                    .sum();
                out.push((size.unwrap_or(default), count));
            }
        }
        out
    }

    /// All values given for `name` (a parameter may repeat), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.params.iter().filter(|p| p.name_is(name)).filter_map(|p| p.value.as_deref()).collect()
    }

    /// The last value of `name` (the one the kernel uses for most parameters).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values(name).last().copied()
    }

    /// Whether `name` appears at all, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name_is(name))
    }

    /// Whether `name=value` appears (value compared as written, comma lists split).
    pub fn has_value(&self, name: &str, value: &str) -> bool {
        self.values(name).iter().any(|v| v.split(',').any(|x| x == value))
    }

    /// The options the kernel gives the framebuffer driver or connector `name` from
    /// `video=NAME:OPTIONS` (the last such parameter wins; `video_get_options`): in
    /// `video=vesafb:off,efifb:off`, everything after `vesafb:` belongs to vesafb.
    pub fn video_options(&self, name: &str) -> Option<&str> {
        self.values("video").into_iter().rev().find_map(|v| v.strip_prefix(name)?.strip_prefix(':'))
    }

    /// The framebuffer driver `name` (`efifb`, `vesafb`) is turned off: its `video=`
    /// options start with `off`, as `fb_get_options` reads them.
    pub fn fb_off(&self, name: &str) -> bool {
        self.video_options(name).is_some_and(|o| o.starts_with("off"))
    }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self.params.iter().map(Param::to_string).collect();
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `hugepages=` counts the size the `hugepagesz=` before it names, else the
    /// default size; node lists are summed.
    #[test]
    fn boot_hugepages_as_the_kernel_reads_them() {
        let c = Cmdline::parse(
            "hugepages=100 hugepagesz=1G hugepages=0:4,1:4 hugepagesz=2M hugepages=512 default_hugepagesz=1G",
        );
        assert_eq!(c.default_hugepage_kib(), 1 << 20);
        assert_eq!(c.boot_hugepages(), vec![(1 << 20, 100), (1 << 20, 8), (2048, 512)]);
        assert_eq!(Cmdline::parse("hugepages=8000").boot_hugepages(), vec![(2048, 8000)]);
        assert_eq!(Cmdline::parse("hugepagesz=1073741824 hugepages=2").boot_hugepages(), vec![(1 << 20, 2)]);
        assert!(Cmdline::parse("quiet").boot_hugepages().is_empty());
    }

    #[test]
    fn parses_the_guides_cmdline() {
        let c = Cmdline::parse(
            "initrd=\\amd-ucode.img root=PARTLABEL=NVMEROOT rw vfio-pci.ids=1002:66af,1002:ab20 video=efifb:off amd_iommu=on iommu=pt cgroup_no_v1=\"all\" threadirqs\n",
        );
        assert_eq!(c.value("vfio_pci.ids"), Some("1002:66af,1002:ab20"));
        assert!(c.has_value("vfio-pci.ids", "1002:ab20"));
        assert_eq!(c.value("root"), Some("PARTLABEL=NVMEROOT"));
        assert_eq!(c.value("cgroup_no_v1"), Some("all"));
        assert!(c.has("threadirqs") && c.has("rw") && !c.has("ro"));
        assert_eq!(c.value("video"), Some("efifb:off"));
        assert!(c.fb_off("efifb"));
        // The guides' combined form turns off only the driver it starts with.
        let c = Cmdline::parse("quiet video=vesafb:off,efifb:off video=DP-1:1920x1080@60");
        assert!(c.fb_off("vesafb") && !c.fb_off("efifb"));
        assert_eq!(c.video_options("DP-1"), Some("1920x1080@60"));
        assert!(Cmdline::parse("video=efifb:off,vesafb:off").fb_off("efifb"));
        assert!(!Cmdline::parse("video=efifb:off video=efifb:nowc").fb_off("efifb"), "the last wins");
    }

    #[test]
    fn quotes_spaces_and_repeats() {
        let c = Cmdline::parse("  dyndbg=\"file foo.c +p\"  hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512 ");
        assert_eq!(c.value("dyndbg"), Some("file foo.c +p"));
        assert_eq!(c.values("hugepagesz"), ["1G", "2M"]);
        assert_eq!(c.to_string(), "dyndbg=\"file foo.c +p\" hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512");
        assert!(Cmdline::parse("").params.is_empty());
        assert_eq!(Cmdline::parse("a=\"unterminated b").value("a"), Some("unterminated b"));
    }
}
