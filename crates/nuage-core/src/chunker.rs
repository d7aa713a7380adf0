//! Content-defined chunking (FastCDC 2020) over any reader, with bounded memory.
//!
//! Chunk boundaries depend only on nearby content, so an insertion in a file moves the
//! boundaries around it and leaves the rest of the chunks, and their addresses, unchanged.

use std::borrow::Cow;
use std::io::{self, Read};

use fastcdc::v2020::{self, Normalization};

use crate::{Error, Result};

/// Sizes of content-defined chunks, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// No chunk is shorter, except the last one of a stream.
    pub min_size: usize,
    /// Target average size.
    pub avg_size: usize,
    /// No chunk is longer.
    pub max_size: usize,
}

impl Default for ChunkerConfig {
    /// 256 KiB / 1 MiB / 4 MiB, as the design brief sets.
    fn default() -> Self {
        ChunkerConfig { min_size: 256 << 10, avg_size: 1 << 20, max_size: 4 << 20 }
    }
}

impl ChunkerConfig {
    /// Checks the sizes against what FastCDC 2020 supports (all even; 64 B ≤ min ≤ 1 MiB,
    /// 256 B ≤ avg ≤ 4 MiB, 1 KiB ≤ max ≤ 16 MiB; min ≤ avg ≤ max).
    pub fn validate(&self) -> Result<()> {
        let ChunkerConfig { min_size, avg_size, max_size } = *self;
        let fail = |m: String| Err(Error::InvalidChunkerConfig(m));
        if [min_size, avg_size, max_size].iter().any(|s| s % 2 != 0) {
            return fail(format!("sizes must be even, got {min_size}/{avg_size}/{max_size}"));
        }
        if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min_size) {
            return fail(format!("min_size {min_size} outside 64 B..=1 MiB"));
        }
        if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg_size) {
            return fail(format!("avg_size {avg_size} outside 256 B..=4 MiB"));
        }
        if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max_size) {
            return fail(format!("max_size {max_size} outside 1 KiB..=16 MiB"));
        }
        if !(min_size <= avg_size && avg_size <= max_size) {
            return fail(format!("need min <= avg <= max, got {min_size}/{avg_size}/{max_size}"));
        }
        Ok(())
    }
}

/// The first read buffer of a chunker, grown by doubling while reads fill it, up to
/// [`READ_MAX`]: a small stream never pays for, nor zeroes, a buffer it does not use.
const READ_FIRST: usize = 16 << 10;

/// The room a chunk's buffer starts with, doubled as it fills: a small file of a folder
/// reserves no more.
const FIRST_CHUNK_BUFFER: usize = 64 << 10;

/// The largest read a chunker asks of its reader.
const READ_MAX: usize = 256 << 10;

/// Cuts a stream into content-defined chunks.
///
/// Streams: the cut points are found as the bytes arrive (the scan's state carries over
/// from one read to the next), and each chunk is written into a buffer the caller owns and
/// can hand on, so the chunker itself holds only a read buffer (at most [`READ_MAX`]) and
/// the bytes read past the last cut. Cut points are those of FastCDC 2020 (the `fastcdc`
/// crate's `v2020::cut`, with the same gear tables and masks), whatever the read sizes.
#[derive(Debug)]
pub struct Chunker<R> {
    reader: R,
    config: ChunkerConfig,
    /// The masks below and above the average size, and each shifted left by one.
    masks: Masks,
    gear: &'static [u64; 256],
    gear_ls: &'static [u64; 256],
    read_buf: Vec<u8>,
    /// Bytes read past the last cut: the start of the next chunk.
    carry: Vec<u8>,
    eof: bool,
}

#[derive(Debug, Clone, Copy)]
struct Masks {
    small: u64,
    large: u64,
    small_ls: u64,
    large_ls: u64,
}

/// Where a scan of one chunk stands: the next even offset to test and the gear hash so far.
struct Scan {
    at: usize,
    hash: u64,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`; fails if the configuration is invalid.
    pub fn new(reader: R, config: ChunkerConfig) -> Result<Self> {
        config.validate()?;
        let (small, large) = v2020::select_masks(config.avg_size, Normalization::Level1);
        let (gear, gear_ls) = match v2020::get_gear_with_seed(0) {
            (Cow::Borrowed(g), Cow::Borrowed(l)) => (g, l),
            _ => unreachable!("seed 0 borrows the static tables"),
        };
        let table = |t: &'static [u64]| -> &'static [u64; 256] { t.try_into().expect("256 entries") };
        Ok(Chunker {
            reader,
            config,
            masks: Masks { small, large, small_ls: small << 1, large_ls: large << 1 },
            gear: table(gear),
            gear_ls: table(gear_ls),
            read_buf: Vec::new(),
            carry: Vec::new(),
            eof: false,
        })
    }

    /// Starts over on another reader, keeping the read buffer.
    pub fn reset(&mut self, reader: R) {
        self.reader = reader;
        self.carry.clear();
        self.eof = false;
    }

    /// Writes the next chunk into `out` (cleared first) and returns `true`, or returns
    /// `false` at the end of the stream. An empty stream has no chunk. `out` keeps its
    /// capacity: a caller that hands the same buffers round allocates nothing per chunk.
    /// After an error the stream's place is lost: call [`Chunker::reset`] before another.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        out.append(&mut self.carry);
        let mut scan = Scan { at: self.config.min_size, hash: 0 };
        loop {
            if let Some(len) = self.scan(out, &mut scan) {
                self.carry.extend_from_slice(&out[len..]);
                out.truncate(len);
                return Ok(len > 0);
            }
            if self.read_buf.len() < READ_FIRST {
                self.read_buf.resize(READ_FIRST, 0);
            }
            // Never past the longest chunk (`scan` ends one there): only bytes after a cut
            // found within a read are carried over.
            let max = self.config.max_size;
            let room = self.read_buf.len().min(max - out.len());
            match self.reader.read(&mut self.read_buf[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if out.capacity() - out.len() < n {
                        // Doubling, never past the longest chunk.
                        let want = (out.capacity() * 2).max(FIRST_CHUNK_BUFFER).min(max).max(out.len() + n);
                        out.reserve_exact(want - out.len());
                    }
                    out.extend_from_slice(&self.read_buf[..n]);
                    if n == self.read_buf.len() && n < READ_MAX {
                        self.read_buf.resize(2 * n, 0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Tests the pairs of `data` (the chunk so far) from `scan.at` on: the length of the
    /// chunk if its end is known, or `None` to read more. As in FastCDC 2020, the first
    /// `min_size` bytes are skipped, bytes are hashed two at a time with a cut tested after
    /// each, under the stricter mask before `avg_size` and the looser one after, and a chunk
    /// ends at `max_size` at the latest. A pair is tested only once both its bytes are in.
    fn scan(&self, data: &[u8], scan: &mut Scan) -> Option<usize> {
        let ChunkerConfig { avg_size, max_size, .. } = self.config;
        let limit = data.len().min(max_size);
        let (gear, gear_ls, m) = (self.gear, self.gear_ls, self.masks);
        let (mut at, mut hash) = (scan.at, scan.hash);
        let mut test = |end: usize, mask: u64, mask_ls: u64| -> Option<usize> {
            while at < end {
                hash = (hash << 2).wrapping_add(gear_ls[data[at] as usize]);
                if hash & mask_ls == 0 {
                    return Some(at);
                }
                hash = hash.wrapping_add(gear[data[at + 1] as usize]);
                if hash & mask == 0 {
                    return Some(at + 1);
                }
                at += 2;
            }
            None
        };
        // Pairs wholly within `limit`: their first byte is below `limit - 1`.
        let last = limit.saturating_sub(1);
        let found = test(last.min(avg_size), m.small, m.small_ls).or_else(|| test(last, m.large, m.large_ls));
        if found.is_some() {
            return found;
        }
        *scan = Scan { at, hash };
        if data.len() >= max_size {
            Some(max_size)
        } else if self.eof {
            Some(data.len())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn chunks(data: &[u8], config: ChunkerConfig) -> Vec<Vec<u8>> {
        drain(Chunker::new(data, config).unwrap())
    }

    fn drain<R: Read>(mut c: Chunker<R>) -> Vec<Vec<u8>> {
        let (mut out, mut buf) = (Vec::new(), Vec::new());
        while c.next_chunk(&mut buf).unwrap() {
            out.push(buf.clone());
        }
        out
    }

    /// A reader that hands out at most `step` bytes per call, to exercise refills.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn validate_rejects_bad_sizes() {
        fn check(min: usize, avg: usize, max: usize, ok: bool) {
            let c = ChunkerConfig { min_size: min, avg_size: avg, max_size: max };
            assert_eq!(c.validate().is_ok(), ok, "{min}/{avg}/{max}");
        }
        check(256 << 10, 1 << 20, 4 << 20, true);
        check(64, 256, 1024, true);
        check(63, 256, 1024, false);
        check(2 << 20, 1 << 20, 4 << 20, false);
        check(256 << 10, 8 << 20, 16 << 20, false);
        check(256 << 10, 1 << 20, 32 << 20, false);
        check(1 << 20, 1 << 20, 1 << 20 | 1, false);
    }

    #[test]
    fn sizes_respect_bounds_and_average() {
        let config = ChunkerConfig::default();
        let data = random(32 << 20, 1);
        let cs = chunks(&data, config);
        assert_eq!(cs.concat(), data);
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= config.min_size && c.len() <= config.max_size, "{}", c.len());
        }
        let avg = data.len() / cs.len();
        assert!((512 << 10..2 << 20).contains(&avg), "average {avg}");
    }

    #[test]
    fn zeros_cut_at_max_and_empty_stream_has_no_chunk() {
        let config = ChunkerConfig::default();
        let cs = chunks(&vec![0u8; 10 << 20], config);
        assert_eq!(cs.iter().map(Vec::len).collect::<Vec<_>>(), [4 << 20, 4 << 20, 2 << 20]);
        assert!(chunks(&[], config).is_empty());
        assert_eq!(chunks(b"x", config), [b"x".to_vec()]);
    }

    #[test]
    fn boundaries_do_not_depend_on_read_sizes() {
        let config = ChunkerConfig { min_size: 4096, avg_size: 16384, max_size: 65536 };
        let data = random(3 << 20, 2);
        let whole = chunks(&data, config);
        assert_eq!(whole, drain(Chunker::new(Trickle(&data, 7777), config).unwrap()));
        assert_eq!(whole, drain(Chunker::new(Trickle(&data, 3), config).unwrap()));
    }

    /// The cut points are FastCDC 2020's, as the `fastcdc` crate finds them over the whole
    /// content: chunks stored before this chunker streamed keep their addresses.
    #[test]
    fn cuts_are_those_of_the_fastcdc_crate() {
        let configs = [
            ChunkerConfig::default(),
            ChunkerConfig { min_size: 64, avg_size: 256, max_size: 1024 },
            ChunkerConfig { min_size: 4096, avg_size: 16384, max_size: 65536 },
            ChunkerConfig { min_size: 1 << 20, avg_size: 1 << 20, max_size: 1 << 20 },
        ];
        for (n, config) in configs.into_iter().enumerate() {
            for len in [0, 1, 63, 64, 65, 1023, 1025, 999_999, 9 << 20] {
                let mut data = random(len, 10 + n as u64);
                // A run of zeros, cut only at the maximum.
                let zeros = len / 3..len / 2;
                data[zeros].fill(0);
                let theirs: Vec<usize> =
                    v2020::FastCDC::new(&data, config.min_size, config.avg_size, config.max_size)
                        .map(|c| c.length)
                        .collect();
                let step = if len <= 1_000_000 { 1 } else { 100_003 };
                let ours = drain(Chunker::new(Trickle(&data, step), config).unwrap());
                assert_eq!(ours.iter().map(Vec::len).collect::<Vec<_>>(), theirs, "{config:?}, {len} bytes");
                assert!(ours.concat() == data, "{config:?}, {len} bytes: the chunks are the content");
            }
        }
    }

    #[test]
    fn an_insertion_in_64_mib_changes_at_most_3_chunks() {
        let config = ChunkerConfig::default();
        let data = random(64 << 20, 3);
        let mut edited = data.clone();
        let at = 32 << 20;
        edited.splice(at..at, random(100, 4));
        let before: std::collections::HashSet<_> = chunks(&data, config).into_iter().collect();
        let after = chunks(&edited, config);
        let changed = after.iter().filter(|c| !before.contains(*c)).count();
        assert!(changed <= 3, "{changed} chunks changed");
        assert!(changed >= 1);
    }

    /// An insertion anywhere changes the chunk around it, and the boundaries fall back in
    /// step soon after. How soon is not a fixed number: the chunk after the edit starts
    /// elsewhere, so its minimum-size skip can step over an old cut point and the change
    /// runs on for another chunk or two (a proptest that claimed "at most 3" failed on a
    /// case with 4). Over 200 seeded cases: the bytes always come back whole, 3 chunks or
    /// fewer change in at least 95% of them, and never more than 8.
    #[test]
    fn insertions_anywhere_keep_distant_chunks() {
        let config = ChunkerConfig { min_size: 2048, avg_size: 8192, max_size: 32768 };
        let mut over_3 = 0;
        let mut worst = 0;
        for case in 0..200u64 {
            let r = random(24, 1000 + case);
            let word = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap());
            let len = 200_000 + (word(0) % 400_000) as usize;
            let at = (word(8) % len as u64) as usize;
            let ins = random(1 + (word(16) % 199) as usize, case);
            let data = random(len, case);
            let mut edited = data.clone();
            edited.splice(at..at, ins);
            let before: std::collections::HashSet<_> = chunks(&data, config).into_iter().collect();
            let after = chunks(&edited, config);
            assert_eq!(after.concat(), edited, "case {case}");
            let changed = after.iter().filter(|c| !before.contains(*c)).count();
            assert!(changed >= 1, "case {case}: an insertion changes the chunk around it");
            over_3 += usize::from(changed > 3);
            worst = worst.max(changed);
        }
        assert!(over_3 <= 10, "{over_3} of 200 cases changed more than 3 chunks");
        assert!(worst <= 8, "a case changed {worst} chunks");
    }
}
