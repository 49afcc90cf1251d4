//! Sets of CPU numbers, in the kernel's list format (`0-3,8-11`) and mask format
//! (`00000000,0000ff0f`), as sysfs prints them in `*_list` and map files.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why a string is not a CPU list or mask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a CPU list ({reason}); expected e.g. 0-3,8,10-11")]
pub struct ParseCpuSetError {
    input: String,
    reason: &'static str,
}

/// Largest CPU number accepted, to keep a garbage range from allocating gigabytes.
pub const MAX_CPU: u32 = 1 << 16;

/// A sorted set of logical CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuSet(Vec<u32>);

impl CpuSet {
    pub fn new() -> Self {
        CpuSet(Vec::new())
    }

    /// Parses a hexadecimal CPU mask as in `shared_cpu_map` (comma-separated 32-bit words,
    /// most significant first).
    pub fn from_mask(s: &str) -> Result<Self, ParseCpuSetError> {
        let err = |reason| ParseCpuSetError { input: s.trim().to_string(), reason };
        let digits: Vec<u8> = s.trim().bytes().filter(|&b| b != b',').collect();
        if digits.is_empty() {
            return Err(err("empty mask"));
        }
        let mut cpus = Vec::new();
        for (i, &d) in digits.iter().rev().enumerate() {
            let nibble = (d as char).to_digit(16).ok_or_else(|| err("not a hex digit"))?;
            for bit in 0..4 {
                if nibble & (1 << bit) != 0 {
                    let cpu = (i as u32) * 4 + bit;
                    if cpu > MAX_CPU {
                        return Err(err("CPU number too large"));
                    }
                    cpus.push(cpu);
                }
            }
        }
        Ok(CpuSet(cpus))
    }

    /// The set as the kernel's hexadecimal mask format (32-bit words, comma separated).
    pub fn to_mask(&self) -> String {
        let words = self.0.last().map_or(1, |&m| m as usize / 32 + 1);
        let mut w = vec![0u32; words];
        for &c in &self.0 {
            w[c as usize / 32] |= 1 << (c % 32);
        }
        w.iter().rev().map(|x| format!("{x:08x}")).collect::<Vec<_>>().join(",")
    }

    pub fn insert(&mut self, cpu: u32) {
        if let Err(pos) = self.0.binary_search(&cpu) {
            self.0.insert(pos, cpu);
        }
    }
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.binary_search(&cpu).is_ok()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut v: Vec<u32> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        CpuSet(v)
    }
}

impl FromStr for CpuSet {
    type Err = ParseCpuSetError;

    /// Parses the list format; an empty string is the empty set (sysfs prints an empty
    /// line for a node without CPUs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseCpuSetError { input: s.trim().to_string(), reason };
        let num = |x: &str| -> Result<u32, ParseCpuSetError> {
            let n: u32 = x.trim().parse().map_err(|_| err("not a number"))?;
            if n > MAX_CPU {
                return Err(err("CPU number too large"));
            }
            Ok(n)
        };
        let mut cpus = Vec::new();
        for part in s.trim().split(',').filter(|p| !p.trim().is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(err("range runs backwards"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(num(part)?),
            }
        }
        Ok(cpus.into_iter().collect())
    }
}

impl fmt::Display for CpuSet {
    /// The kernel's list format: `0-3,8,10-11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl Serialize for CpuSet {
    /// JSON carries the CPUs as an array of numbers.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip() {
        let s: CpuSet = "4-7,20-23\n".parse().unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s.to_string(), "4-7,20-23");
        assert_eq!("0,2,3,5".parse::<CpuSet>().unwrap().to_string(), "0,2-3,5");
        assert!("".parse::<CpuSet>().unwrap().is_empty());
        assert!("\n".parse::<CpuSet>().unwrap().is_empty());
    }

    #[test]
    fn mask_round_trip() {
        let s = CpuSet::from_mask("00000000,00f000f0\n").unwrap();
        assert_eq!(s.to_string(), "4-7,20-23");
        assert_eq!(s.to_mask(), "00f000f0");
        let big: CpuSet = "0,40".parse().unwrap();
        assert_eq!(big.to_mask(), "00000100,00000001");
        assert_eq!(CpuSet::from_mask(&big.to_mask()).unwrap(), big);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["a", "3-1", "1-", "-", "99999999", "0-4294967295"] {
            assert!(bad.parse::<CpuSet>().is_err(), "{bad}");
        }
        assert!(CpuSet::from_mask("zz").is_err());
        assert!(CpuSet::from_mask("").is_err());
    }
}
