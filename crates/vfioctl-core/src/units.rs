//! Sizes: libvirt's scaled integers (`<memory unit='GiB'>`) and sizes for people.

use crate::xml::Element;

/// A libvirt scaled integer (`<memory unit>`, `<page size unit>`) in KiB; the unit is KiB
/// when not given. Units as libvirt reads them: `b`/`bytes`, `k`/`KiB` (1024), `KB`
/// (1000), and so on up to exbibytes.
pub fn kib(n: u64, unit: Option<&str>) -> Option<u64> {
    let unit = unit.unwrap_or("KiB");
    let lower = unit.to_ascii_lowercase();
    if matches!(lower.as_str(), "b" | "byte" | "bytes") {
        return Some(n / 1024);
    }
    let mut chars = lower.chars();
    let power = match chars.next()? {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let base: u128 = match chars.as_str() {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    let bytes = u128::from(n).checked_mul(base.checked_pow(power)?)?;
    u64::try_from(bytes / 1024).ok()
}

/// The size an element gives in its text (`<memory unit='KiB'>4194304</memory>`), in KiB.
pub fn element_kib(e: &Element) -> Option<u64> {
    kib(e.text().parse().ok()?, e.attr("unit"))
}

/// `1 GiB`, `2 MiB`.
pub fn size_text(kib: u64) -> String {
    if kib >= 1 << 20 && kib % (1 << 20) == 0 {
        format!("{} GiB", kib >> 20)
    } else if kib >= 1024 && kib % 1024 == 0 {
        format!("{} MiB", kib >> 10)
    } else {
        format!("{kib} KiB")
    }
}

/// `1 core`, `2 cores`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Seconds since the epoch as a UTC date and time, `2026-11-21 03:43:51 UTC`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A number as libvirt writes PCI addresses and indexes: `0x0d` or `13`.
pub fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_units() {
        assert_eq!(kib(16, Some("GiB")), Some(16 << 20));
        assert_eq!(kib(16, Some("G")), Some(16 << 20));
        assert_eq!(kib(2048, None), Some(2048));
        assert_eq!(kib(1, Some("GB")), Some(976_562));
        assert_eq!(kib(4096, Some("bytes")), Some(4));
        assert_eq!(kib(1, Some("furlong")), None);
        assert_eq!(size_text(1 << 20), "1 GiB");
        assert_eq!(size_text(2048), "2 MiB");
        assert_eq!(size_text(100), "100 KiB");
        assert_eq!(count(1, "core", "cores"), "1 core");
        assert_eq!(count(4, "core", "cores"), "4 cores");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_232_864), "2026-11-21 03:47:44 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
