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
    }
}
