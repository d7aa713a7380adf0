//! Chunk + seal a whole stream into stored chunks and a manifest, on one thread or two.

use std::io::{self, Read};
use std::sync::mpsc;

use crate::chunk::{self, ConvergenceSecret, SealOptions, SealedChunk};
use crate::{Chunker, ChunkerConfig, Manifest, ManifestEntry, Result};

/// Everything needed to turn plaintext into stored chunks.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Chunk sizes.
    pub chunker: ChunkerConfig,
    /// Compression.
    pub seal: SealOptions,
    /// The convergence secret chunk keys derive from.
    pub secret: ConvergenceSecret,
}

/// Why a pipeline run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError<E> {
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Read(#[from] io::Error),
    /// The sink refused a chunk.
    #[error("storing a chunk: {0}")]
    Sink(E),
}

/// Chunks in flight between the two threads of [`Pipeline::run_parallel`]; with the buffers
/// being recycled, memory stays near `(QUEUE + 2) × max_size` plus the chunker's buffer.
const QUEUE: usize = 4;

impl Pipeline {
    /// A pipeline with the default chunk sizes and compression.
    pub fn new(secret: ConvergenceSecret) -> Self {
        Pipeline { chunker: ChunkerConfig::default(), seal: SealOptions::default(), secret }
    }

    /// Reads `reader` to its end on the calling thread, hands each stored chunk to `sink` in
    /// order, and returns the manifest.
    pub fn run<R: Read, E>(
        &self,
        reader: R,
        mut sink: impl FnMut(SealedChunk) -> Result<(), E>,
    ) -> Result<Manifest, PipelineError<E>> {
        let mut chunker = Chunker::new(reader, self.chunker).map_err(io::Error::other)?;
        let mut hasher = blake3::Hasher::new();
        let mut entries = Vec::new();
        let mut size = 0u64;
        while let Some(plain) = chunker.next_chunk()? {
            hasher.update(plain);
            size += plain.len() as u64;
            let sealed = chunk::seal(&self.secret, plain, &self.seal);
            entries.push(entry_of(&sealed));
            sink(sealed).map_err(PipelineError::Sink)?;
        }
        Ok(Manifest { entries, size, hash: *hasher.finalize().as_bytes() })
    }

    /// Like [`Pipeline::run`], with chunking and the whole-file hash on a second thread
    /// while the calling thread seals and calls `sink`: about twice the throughput on two
    /// cores. Chunks reach `sink` in order.
    pub fn run_parallel<R: Read + Send, E>(
        &self,
        reader: R,
        mut sink: impl FnMut(SealedChunk) -> Result<(), E>,
    ) -> Result<Manifest, PipelineError<E>> {
        let mut chunker = Chunker::new(reader, self.chunker).map_err(io::Error::other)?;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
            let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
            let producer = scope.spawn(move || -> io::Result<(u64, [u8; 32])> {
                let mut hasher = blake3::Hasher::new();
                let mut size = 0u64;
                while let Some(plain) = chunker.next_chunk()? {
                    hasher.update(plain);
                    size += plain.len() as u64;
                    let mut buf = recycle_rx.try_recv().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(plain);
                    if tx.send(buf).is_err() {
                        break; // the consumer stopped on a sink error
                    }
                }
                Ok((size, *hasher.finalize().as_bytes()))
            });
            let mut entries = Vec::new();
            let mut sink_error = None;
            for plain in rx.iter() {
                let sealed = chunk::seal(&self.secret, &plain, &self.seal);
                entries.push(entry_of(&sealed));
                if let Err(e) = sink(sealed) {
                    sink_error = Some(e);
                    break;
                }
                let _ = recycle_tx.send(plain);
            }
            drop(rx);
            let read = producer.join().expect("chunker thread panicked");
            if let Some(e) = sink_error {
                return Err(PipelineError::Sink(e));
            }
            let (size, hash) = read?;
            Ok(Manifest { entries, size, hash })
        })
    }
}

fn entry_of(sealed: &SealedChunk) -> ManifestEntry {
    ManifestEntry { address: sealed.address, key: sealed.key, plain_len: sealed.plain_len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Compression, open};
    use std::collections::HashMap;

    fn pipeline(compression: Compression) -> Pipeline {
        Pipeline {
            chunker: ChunkerConfig { min_size: 4096, avg_size: 16384, max_size: 65536 },
            seal: SealOptions { compression },
            secret: ConvergenceSecret::from_bytes([5; 32]),
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn both_runs_agree_and_reassemble() {
        for compression in [Compression::None, Compression::Zstd(1)] {
            let p = pipeline(compression);
            let input = data(1 << 20);
            let mut store = HashMap::new();
            let m1 = p.run(&input[..], |c| -> Result<(), ()> {
                store.insert(c.address, c.bytes);
                Ok(())
            });
            let m1 = m1.unwrap();
            let m2 = p.run_parallel(&input[..], |_| -> Result<(), ()> { Ok(()) }).unwrap();
            assert_eq!(m1, m2);
            assert_eq!(m1.size, input.len() as u64);
            assert_eq!(m1.hash, *blake3::hash(&input).as_bytes());
            let mut back = Vec::new();
            for e in &m1.entries {
                back.extend(open(&store[&e.address], &e.key, e.plain_len).unwrap());
            }
            assert_eq!(back, input);
        }
    }

    #[test]
    fn a_sink_error_stops_the_run() {
        let p = pipeline(Compression::None);
        let input = data(1 << 20);
        let mut seen = 0;
        let r = p.run_parallel(&input[..], |_| {
            seen += 1;
            if seen == 3 { Err("full") } else { Ok(()) }
        });
        assert!(matches!(r, Err(PipelineError::Sink("full"))));
        assert_eq!(seen, 3);
    }

    #[test]
    fn empty_input_gives_an_empty_manifest() {
        let m = pipeline(Compression::None).run_parallel(&[][..], |_| -> Result<(), ()> { Ok(()) }).unwrap();
        assert!(m.entries.is_empty());
        assert_eq!(m.size, 0);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }
}
