//! The one chunk pipeline: plaintext streams → sealed chunks and manifests, the chunking
//! and the whole-file hash on one thread while the calling thread seals and hands each
//! chunk on. Simple uploads and smart uploads run it over one stream
//! ([`Pipeline::run_parallel`]); ingest runs it over a whole folder's files
//! ([`Pipeline::run_many`]), one chunker (and its buffer) for all of them.

use std::io::{self, Read};
use std::sync::mpsc;

use crate::chunk::{self, ConvergenceSecret, SealOptions, SealedChunk};
use crate::{Chunker, ChunkerConfig, Manifest, ManifestEntry};

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
    /// Reading an input (or getting it from the iterator of inputs) failed; `input` is its
    /// place among the inputs, from 0.
    #[error("reading input {input}: {source}")]
    Read {
        /// Which input.
        input: usize,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The sink refused a piece.
    #[error("storing a chunk: {0}")]
    Sink(E),
    /// The chunk sizes do not hold together (nothing was read).
    #[error("chunking: {0}")]
    Config(crate::Error),
}

/// One input of [`Pipeline::run_many`].
#[derive(Debug)]
pub enum Input<R, T> {
    /// Read `reader` to its end, chunk and seal it; `tag` comes back with its manifest.
    Read {
        /// The content.
        reader: R,
        /// What the caller needs back with the manifest (a path, a file's stamp).
        tag: T,
    },
    /// Not read (a file known unchanged): `tag` comes back in its place among the others.
    Pass(T),
}

/// What [`Pipeline::run_many`] hands its sink, in the order of the inputs.
#[derive(Debug)]
pub enum Piece<T> {
    /// The next chunk of the input being read.
    Chunk(SealedChunk),
    /// The input being read has ended: its manifest, and its tag.
    End {
        /// Its chunks, size and whole-content hash.
        manifest: Manifest,
        /// The tag it came with.
        tag: T,
    },
    /// An input passed through unread.
    Passed(T),
}

/// Chunks cut and not yet sealed, at most: the chunking thread takes a token for each and
/// waits when all are out, so a run holds at most `CHUNKS_IN_FLIGHT` cut chunks besides the
/// one it holds (being read, or cut and waiting for a token) and the sealed ones its sink
/// holds, whatever the input. Each chunk has a buffer of its own, freed once sealed: no
/// buffer outlives its chunk at the size of the largest one. Four, as ingest of a folder of
/// small files was measured with (docs/benchmarks.md, "One chunk pipeline, before and after").
const CHUNKS_IN_FLIGHT: usize = 4;

/// Messages between the two threads: more than the chunks, so that a folder of small files
/// (a chunk and an end per file, or a pass) does not make the threads take turns.
const MESSAGES: usize = 16;

/// What the chunking thread sends the sealing one.
enum Cut<T, H> {
    Plain(Vec<u8>, H),
    End { size: u64, hash: [u8; 32], tag: T },
    Pass(T),
}

impl Pipeline {
    /// A pipeline with the default chunk sizes and compression.
    pub fn new(secret: ConvergenceSecret) -> Self {
        Pipeline { chunker: ChunkerConfig::default(), seal: SealOptions::default(), secret }
    }

    /// Reads `reader` to its end, hands each sealed chunk to `sink` in order, and returns
    /// the manifest: [`Pipeline::run_many`] over one input.
    pub fn run_parallel<R: Read + Send, E>(
        &self,
        reader: R,
        mut sink: impl FnMut(SealedChunk) -> Result<(), E>,
    ) -> Result<Manifest, PipelineError<E>> {
        self.run_parallel_holding(reader, |_| (), |chunk, ()| sink(chunk))
    }

    /// [`Pipeline::run_parallel`], taking room for each chunk as it is cut: `room` is called
    /// on the chunking thread with the chunk's length, and may wait (for memory a server
    /// shares among its writes); what it returns is handed to `sink` with the sealed chunk,
    /// to be kept until the chunk is stored. Only the chunk still being read is held
    /// without room, so a slow reader holds none.
    pub fn run_parallel_holding<R: Read + Send, E, H: Send>(
        &self,
        reader: R,
        room: impl FnMut(usize) -> H + Send,
        mut sink: impl FnMut(SealedChunk, H) -> Result<(), E>,
    ) -> Result<Manifest, PipelineError<E>> {
        let mut manifest = None;
        let inputs = std::iter::once(Ok(Input::Read { reader, tag: () }));
        self.run(inputs, room, |piece, held| {
            match piece {
                Piece::Chunk(c) => return sink(c, held.expect("a chunk comes with its room")),
                Piece::End { manifest: m, .. } => manifest = Some(m),
                Piece::Passed(()) => {}
            }
            Ok(())
        })?;
        Ok(manifest.expect("one input read to its end gives one manifest"))
    }

    /// [`Pipeline::run_parallel`] on the calling thread alone: for a content small enough
    /// (a few dozen KiB, one chunk) that a second thread costs more than it saves.
    pub fn run_inline<R: Read, E>(
        &self,
        reader: R,
        mut sink: impl FnMut(SealedChunk) -> Result<(), E>,
    ) -> Result<Manifest, PipelineError<E>> {
        self.chunker.validate().map_err(PipelineError::Config)?;
        let read = |source| PipelineError::Read { input: 0, source };
        let mut chunker = Chunker::new(reader, self.chunker).map_err(|e| read(io::Error::other(e)))?;
        let (mut hasher, mut size, mut entries) = (blake3::Hasher::new(), 0u64, Vec::new());
        let mut plain = Vec::new();
        while chunker.next_chunk(&mut plain).map_err(read)? {
            hasher.update(&plain);
            size += plain.len() as u64;
            let sealed = chunk::seal(&self.secret, &plain, &self.seal);
            entries.push(entry_of(&sealed));
            sink(sealed).map_err(PipelineError::Sink)?;
        }
        Ok(Manifest { entries, size, hash: *hasher.finalize().as_bytes(), parts: Vec::new() })
    }

    /// Runs `inputs` in order: each read input is chunked (on a second thread, which also
    /// hashes it whole) and sealed (on the calling thread), its chunks handed to `sink` and
    /// then its manifest; each passed input is handed back in its place. About twice the
    /// throughput of one thread on two cores; one chunker serves every input. The iterator
    /// runs on the chunking thread, ahead of the sink by at most a few chunks, and an
    /// error it yields stops the run as a read error of that input.
    pub fn run_many<R, T, E, I>(
        &self,
        inputs: I,
        mut sink: impl FnMut(Piece<T>) -> Result<(), E>,
    ) -> Result<(), PipelineError<E>>
    where
        R: Read + Send,
        T: Send,
        I: IntoIterator<Item = io::Result<Input<R, T>>>,
        I::IntoIter: Send,
    {
        self.run(inputs, |_| (), |piece, _| sink(piece))
    }

    /// [`Pipeline::run_many`], with room taken for each chunk (see
    /// [`Pipeline::run_parallel_holding`]) and handed with it (`None` with other pieces).
    fn run<R, T, E, I, H>(
        &self,
        inputs: I,
        mut room: impl FnMut(usize) -> H + Send,
        mut sink: impl FnMut(Piece<T>, Option<H>) -> Result<(), E>,
    ) -> Result<(), PipelineError<E>>
    where
        R: Read + Send,
        T: Send,
        H: Send,
        I: IntoIterator<Item = io::Result<Input<R, T>>>,
        I::IntoIter: Send,
    {
        self.chunker.validate().map_err(PipelineError::Config)?;
        let (config, inputs) = (self.chunker, inputs.into_iter());
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Cut<T, H>>(MESSAGES);
            let (token_tx, token_rx) = mpsc::channel::<()>();
            for _ in 0..CHUNKS_IN_FLIGHT {
                token_tx.send(()).expect("the receiver is here");
            }
            let producer = scope.spawn(move || -> Result<(), (usize, io::Error)> {
                let mut chunker: Option<Chunker<R>> = None;
                let mut spare: Option<Vec<u8>> = None;
                for (n, input) in inputs.enumerate() {
                    let (reader, tag) = match input.map_err(|e| (n, e))? {
                        Input::Read { reader, tag } => (reader, tag),
                        Input::Pass(tag) => {
                            if tx.send(Cut::Pass(tag)).is_err() {
                                return Ok(()); // the sealer stopped on a sink error
                            }
                            continue;
                        }
                    };
                    let chunker = match &mut chunker {
                        Some(c) => {
                            c.reset(reader);
                            c
                        }
                        None => chunker
                            .insert(Chunker::new(reader, config).map_err(|e| (n, io::Error::other(e)))?),
                    };
                    let mut hasher = blake3::Hasher::new();
                    let mut size = 0u64;
                    loop {
                        let mut buf = spare.take().unwrap_or_default();
                        if !chunker.next_chunk(&mut buf).map_err(|e| (n, e))? {
                            spare = Some(buf);
                            break;
                        }
                        hasher.update(&buf);
                        size += buf.len() as u64;
                        // A token back from the sealing thread (none while it has them
                        // all), then room: a chunk holds room only once it can be sealed.
                        if token_rx.recv().is_err() {
                            return Ok(()); // the sealer stopped on a sink error
                        }
                        let held = room(buf.len());
                        if tx.send(Cut::Plain(buf, held)).is_err() {
                            return Ok(());
                        }
                    }
                    if tx.send(Cut::End { size, hash: *hasher.finalize().as_bytes(), tag }).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            });
            let mut entries = Vec::new();
            let mut sink_error = None;
            for cut in rx.iter() {
                let (piece, held) = match cut {
                    Cut::Plain(plain, held) => {
                        let sealed = chunk::seal(&self.secret, &plain, &self.seal);
                        entries.push(entry_of(&sealed));
                        drop(plain);
                        let _ = token_tx.send(());
                        (Piece::Chunk(sealed), Some(held))
                    }
                    Cut::End { size, hash, tag } => {
                        let manifest =
                            Manifest { entries: std::mem::take(&mut entries), size, hash, parts: Vec::new() };
                        (Piece::End { manifest, tag }, None)
                    }
                    Cut::Pass(tag) => (Piece::Passed(tag), None),
                };
                if let Err(e) = sink(piece, held) {
                    sink_error = Some(e);
                    break;
                }
            }
            // Unblocks the chunking thread, whether it waits to send or for a buffer.
            drop(rx);
            drop(token_tx);
            let read = producer.join().expect("chunker thread panicked");
            if let Some(e) = sink_error {
                return Err(PipelineError::Sink(e));
            }
            read.map_err(|(input, source)| PipelineError::Read { input, source })
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
    fn a_run_reassembles_and_many_inputs_agree_with_one_at_a_time() {
        for compression in [Compression::None, Compression::Zstd(1)] {
            let p = pipeline(compression);
            let input = data(1 << 20);
            let mut store = HashMap::new();
            let m1 = p.run_parallel(&input[..], |c| -> Result<(), ()> {
                store.insert(c.address, c.bytes);
                Ok(())
            });
            let m1 = m1.unwrap();
            assert_eq!(m1.size, input.len() as u64);
            assert_eq!(m1.hash, *blake3::hash(&input).as_bytes());
            let mut back = Vec::new();
            for e in &m1.entries {
                back.extend(open(&store[&e.address], &e.key, e.plain_len).unwrap());
            }
            assert_eq!(back, input);
            // The same content among others, one passed and one empty: each manifest is
            // the one a run over it alone gives, in the order of the inputs.
            let other = data(300_000).into_iter().rev().collect::<Vec<u8>>();
            let inputs = vec![
                Ok(Input::Read { reader: &other[..], tag: "other" }),
                Ok(Input::Pass("skipped")),
                Ok(Input::Read { reader: &[][..], tag: "empty" }),
                Ok(Input::Read { reader: &input[..], tag: "input" }),
            ];
            let mut seen = Vec::new();
            let mut chunks = 0;
            p.run_many(inputs, |piece| -> Result<(), ()> {
                match piece {
                    Piece::Chunk(_) => chunks += 1,
                    Piece::End { manifest, tag } => seen.push((tag, Some(manifest))),
                    Piece::Passed(tag) => seen.push((tag, None)),
                }
                Ok(())
            })
            .unwrap();
            let alone = |bytes: &[u8]| Some(p.run_parallel(bytes, |_| -> Result<(), ()> { Ok(()) }).unwrap());
            let want = vec![
                ("other", alone(&other)),
                ("skipped", None),
                ("empty", alone(&[])),
                ("input", Some(m1.clone())),
            ];
            assert_eq!(seen, want);
            assert_eq!(chunks, want.iter().flat_map(|(_, m)| m).map(|m| m.entries.len()).sum::<usize>());
        }
    }

    #[test]
    fn a_run_inline_gives_the_manifest_and_chunks_of_a_parallel_run() {
        let p = pipeline(Compression::Zstd(1));
        for len in [0, 100, 4096, 300_000] {
            let input = data(len);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let parallel = p.run_parallel(&input[..], |c| -> Result<(), ()> {
                a.push(c.address);
                Ok(())
            });
            let inline = p.run_inline(&input[..], |c| -> Result<(), ()> {
                b.push(c.address);
                Ok(())
            });
            assert_eq!(parallel.unwrap(), inline.unwrap(), "{len} bytes");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_failing_input_is_named_by_its_place() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let p = pipeline(Compression::None);
        let inputs: Vec<io::Result<Input<Box<dyn Read + Send>, u32>>> = vec![
            Ok(Input::Read { reader: Box::new(&b"fine"[..]), tag: 0 }),
            Ok(Input::Read { reader: Box::new(Broken), tag: 1 }),
            Ok(Input::Read { reader: Box::new(&b"never read"[..]), tag: 2 }),
        ];
        let mut ended = Vec::new();
        let r = p.run_many(inputs, |piece| -> Result<(), ()> {
            if let Piece::End { tag, .. } = piece {
                ended.push(tag);
            }
            Ok(())
        });
        assert!(
            matches!(r, Err(PipelineError::Read { input: 1, ref source }) if source.to_string() == "disk gone")
        );
        assert_eq!(ended, [0], "what came before the failing input reached the sink");
        let opening = vec![Ok(Input::Pass(0)), Err(io::Error::other("no such file"))];
        let r = p.run_many::<&[u8], u32, (), _>(opening, |_| Ok(()));
        assert!(matches!(r, Err(PipelineError::Read { input: 1, .. })));
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
