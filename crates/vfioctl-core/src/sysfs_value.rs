//! Parsers for single sysfs attribute values. Each takes the file's text and returns a
//! typed value or a short reason; the caller adds the path.

/// Why a sysfs value could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected value `{value}`: {expected}")]
pub struct ValueError {
    pub value: String,
    pub expected: &'static str,
}

fn value_error(s: &str, expected: &'static str) -> ValueError {
    let mut value: String = s.trim().chars().take(40).collect();
    if s.trim().chars().count() > 40 {
        value.push('…');
    }
    ValueError { value, expected }
}

/// `0x1002\n` → 0x1002 (vendor, device, subsystem ids; class; revision).
pub fn hex_u32(s: &str) -> Result<u32, ValueError> {
    let t = s.trim();
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    if digits.is_empty() || digits.len() > 8 {
        return Err(value_error(s, "a hexadecimal number like 0x1002"));
    }
    u32::from_str_radix(digits, 16).map_err(|_| value_error(s, "a hexadecimal number like 0x1002"))
}

pub fn hex_u16(s: &str) -> Result<u16, ValueError> {
    u16::try_from(hex_u32(s)?).map_err(|_| value_error(s, "a 16-bit hexadecimal number like 0x1002"))
}

pub fn hex_u8(s: &str) -> Result<u8, ValueError> {
    u8::try_from(hex_u32(s)?).map_err(|_| value_error(s, "an 8-bit hexadecimal number like 0xc1"))
}

/// A plain decimal number (`core_id`, `level`, group numbers).
pub fn dec_u32(s: &str) -> Result<u32, ValueError> {
    s.trim().parse().map_err(|_| value_error(s, "a decimal number"))
}

/// `numa_node`: `-1` means the platform did not say.
pub fn numa_node(s: &str) -> Result<Option<u32>, ValueError> {
    match s.trim() {
        "-1" => Ok(None),
        t => t.parse().map(Some).map_err(|_| value_error(s, "a NUMA node number or -1")),
    }
}

/// `boot_vga`: `1` when the device drives the boot console.
pub fn flag(s: &str) -> Result<bool, ValueError> {
    match s.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(value_error(s, "0 or 1")),
    }
}

/// `reset_method`: space separated method names (`flr bus`), empty when none.
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Cache `size` (`32768K`, `8M`) → KiB.
pub fn size_kib(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let bad = || value_error(s, "a size like 512K or 8M");
    let (num, mult) = match t.as_bytes().last() {
        Some(b'K') => (&t[..t.len() - 1], 1),
        Some(b'M') => (&t[..t.len() - 1], 1024),
        Some(b'G') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(bad)
}

/// The value after `key` in a `/sys/devices/system/node/nodeN/meminfo` or `/proc/meminfo`
/// style text (`Node 0 MemTotal:       16314104 kB`) in kB.
pub fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (head, rest) = line.split_once(':')?;
        if head.split_whitespace().last()? != key {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(hex_u16("0x1002\n").unwrap(), 0x1002);
        assert_eq!(hex_u32("0x030000\n").unwrap(), 0x030000);
        assert_eq!(hex_u8("0xc1\n").unwrap(), 0xc1);
        assert!(hex_u16("0x10000").is_err());
        assert!(hex_u16("banana").is_err());
        assert!(hex_u16("").is_err());
        assert_eq!(numa_node("-1\n").unwrap(), None);
        assert_eq!(numa_node("1\n").unwrap(), Some(1));
        assert!(numa_node("x").is_err());
        assert!(flag("1\n").unwrap());
        assert!(flag("2").is_err());
        assert_eq!(words("flr bus\n"), ["flr", "bus"]);
        assert!(words("\n").is_empty());
        assert_eq!(size_kib("32768K\n").unwrap(), 32768);
        assert_eq!(size_kib("8M").unwrap(), 8192);
        assert!(size_kib("lots").is_err());
    }

    #[test]
    fn long_garbage_is_shortened_in_errors() {
        let e = hex_u16(&"z".repeat(500)).unwrap_err();
        assert!(e.to_string().len() < 120);
    }

    #[test]
    fn meminfo() {
        let t = "Node 0 MemTotal:       16314104 kB\nNode 0 MemFree:  1 kB\n";
        assert_eq!(meminfo_kib(t, "MemTotal"), Some(16314104));
        assert_eq!(meminfo_kib("MemTotal:  5 kB\n", "MemTotal"), Some(5));
        assert_eq!(meminfo_kib(t, "HugePages_Total"), None);
    }
}
