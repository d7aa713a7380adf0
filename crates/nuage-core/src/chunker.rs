//! Content-defined chunking (FastCDC 2020) over any reader, with bounded memory.
//!
//! Chunk boundaries depend only on nearby content, so an insertion in a file moves the
//! boundaries around it and leaves the rest of the chunks, and their addresses, unchanged.

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

/// The buffer a chunker starts with, grown by doubling up to twice the maximum chunk size.
const FIRST_BUFFER: usize = 64 << 10;

/// Cuts a stream into content-defined chunks.
///
/// Holds one buffer of up to twice the maximum chunk size, grown as the stream fills it (a
/// small stream never pays for, nor zeroes, megabytes it does not use); a returned chunk
/// borrows from it until the next call.
#[derive(Debug)]
pub struct Chunker<R> {
    reader: R,
    config: ChunkerConfig,
    masks: (u64, u64),
    buf: Vec<u8>,
    /// Start of the bytes not yet returned.
    pos: usize,
    /// End of the bytes read so far.
    filled: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`; fails if the configuration is invalid.
    pub fn new(reader: R, config: ChunkerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Chunker {
            reader,
            config,
            masks: v2020::select_masks(config.avg_size, Normalization::Level1),
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            eof: false,
        })
    }

    /// Starts over on another reader, keeping the buffer.
    pub fn reset(&mut self, reader: R) {
        self.reader = reader;
        self.pos = 0;
        self.filled = 0;
        self.eof = false;
    }

    /// The next chunk, or `None` at the end of the stream. An empty stream has no chunk.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        let max = self.config.max_size;
        if self.filled - self.pos < max && !self.eof {
            // Slide the unreturned tail to the front, then fill up to twice the maximum.
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
            let end = 2 * max;
            while self.filled < end {
                if self.filled == self.buf.len() {
                    let grown = (self.buf.len() * 2).max(FIRST_BUFFER).min(end);
                    self.buf.resize(grown, 0);
                }
                match self.reader.read(&mut self.buf[self.filled..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.pos == self.filled {
            return Ok(None);
        }
        let window = &self.buf[self.pos..self.filled];
        let (mask_s, mask_l) = self.masks;
        let ChunkerConfig { min_size, avg_size, max_size } = self.config;
        let (_, len) =
            v2020::cut(window, min_size, avg_size, max_size, mask_s, mask_l, mask_s << 1, mask_l << 1);
        let start = self.pos;
        self.pos += len;
        Ok(Some(&self.buf[start..start + len]))
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
        let mut c = Chunker::new(data, config).unwrap();
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch.to_vec());
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
        let mut c = Chunker::new(Trickle(&data, 7777), config).unwrap();
        let mut trickled = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            trickled.push(ch.to_vec());
        }
        assert_eq!(whole, trickled);
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
