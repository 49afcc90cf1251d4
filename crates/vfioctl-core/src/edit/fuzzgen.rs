//! Deterministic pseudo-random inputs for the editors' "never panics" tests: strings
//! built from a small alphabet of characters and words that matter to the parsers.

/// A xorshift64* generator (no dependencies, same sequence everywhere).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The characters every parser here finds tricky.
pub(crate) const TRICKY: &[&str] =
    &["\"", "'", "\\", "=", "(", ")", "#", "\n", " ", "\t", "$", "a", "b", "x", "é", "\r", "{", "}", ",", ":", "/"];

/// `count` strings of up to `max_len` pieces drawn from [`TRICKY`] and `words`.
pub(crate) fn strings(seed: u64, count: usize, max_len: usize, words: &[&str]) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let pieces: Vec<&str> = TRICKY.iter().chain(words.iter()).copied().collect();
    (0..count)
        .map(|_| {
            let len = rng.below(max_len + 1);
            (0..len).map(|_| pieces[rng.below(pieces.len())]).collect()
        })
        .collect()
}

/// Edits with parameters that the generated texts may hold.
pub(crate) fn edits() -> Vec<super::CmdlineEdit> {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        super::CmdlineEdit {
            add: v(&["amd_iommu=on", "iommu=pt", "vfio-pci.ids=10de:1b06,10de:10ef"]),
            remove: vec![],
        },
        super::CmdlineEdit { add: v(&["a=x", "b"]), remove: v(&["x", "a", "b=\"x\""]) },
        super::CmdlineEdit { add: v(&["dyndbg=\"a b\"", "$x"]), remove: v(&["a=b"]) },
    ]
}

/// Owned strings from string literals.
pub fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// A command line edit from string literals.
pub fn e(add: &[&str], remove: &[&str]) -> super::CmdlineEdit {
    super::CmdlineEdit { add: v(add), remove: v(remove) }
}

/// The modules the editors' tests load early.
pub const VFIO: [&str; 3] = ["vfio", "vfio_iommu_type1", "vfio_pci"];

/// Applies an editor once, checks that a second run changes nothing, returns the text.
pub fn idempotent<A: ?Sized>(
    edit: impl Fn(Option<&str>, &A) -> Result<String, super::EditError>,
    text: Option<&str>,
    arg: &A,
) -> String {
    let once = edit(text, arg).unwrap();
    assert_eq!(edit(Some(&once), arg).unwrap(), once, "not idempotent");
    once
}
