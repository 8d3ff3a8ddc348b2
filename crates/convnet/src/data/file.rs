//! Reading data files in bounded memory, raw or gunzipped on the fly (gzip is detected by the
//! magic bytes `1f 8b`, not by the name; concatenated gzip members are read as one stream, as
//! `gunzip` does).
//!
//! A loader reads the header first, then exactly the body its header announces, plus one byte
//! to tell a longer file: a small gzip file that inflates to gigabytes (a "gzip bomb") is
//! refused once it has inflated what its header allows, never all of it. The length of a raw
//! file is checked against its header from the file's metadata, before its body is read.
//! Buffers are reserved with `try_reserve`, so a size the machine cannot hold is an error, not
//! an abort.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::DataError;

/// How many times its compressed size a gzip body is assumed to inflate to when reserving
/// memory for it (data sets compress far less; more only costs a reallocation).
const GZIP_RESERVE_RATIO: u64 = 8;

/// An open data file, read front to back.
pub(crate) struct DataFile {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    gzip: bool,
    /// The length of the stored bytes (on disk, or compiled in), when known.
    stored_len: Option<u64>,
    /// Bytes read so far (after gunzip).
    pos: u64,
}

impl DataFile {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
        let stored_len = meta.is_file().then_some(meta.len());
        Self::new(path, Box::new(BufReader::new(file)), stored_len)
    }

    /// Bytes compiled into the binary; `path` names them in messages.
    pub fn from_static(path: &Path, bytes: &'static [u8]) -> Result<Self, DataError> {
        Self::new(path, Box::new(bytes), Some(bytes.len() as u64))
    }

    fn new(
        path: &Path,
        mut stored: Box<dyn BufRead + Send>,
        stored_len: Option<u64>,
    ) -> Result<Self, DataError> {
        let gzip = is_gzip(stored.fill_buf().map_err(|e| DataError::io(path, e))?);
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(stored))
        } else {
            Box::new(stored)
        };
        Ok(DataFile {
            path: path.to_path_buf(),
            reader,
            gzip,
            stored_len,
            pos: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is gzip (so sizes in messages are after gunzip).
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The length of a raw file, known without reading it (`None` for gzip files and for
    /// streams such as pipes).
    pub fn raw_len(&self) -> Option<u64> {
        self.stored_len.filter(|_| !self.gzip)
    }

    /// Up to `n` next bytes: fewer only at the end of the file.
    pub fn read_prefix(&mut self, n: usize) -> Result<Vec<u8>, DataError> {
        let mut buf = Vec::with_capacity(n);
        self.read_limited(n as u64, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` as far as the file goes; returns how many bytes were read (fewer than
    /// `buf.len()` only at the end of the file).
    pub fn read_fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        self.pos += filled as u64;
        Ok(filled)
    }

    /// The rest of the file, which must be exactly `len` bytes: fewer is
    /// [`DataError::Truncated`], more is [`DataError::TrailingBytes`] (found by reading one
    /// byte past `len`, so a longer gzip stream is not inflated further). `what` says what the
    /// header announced, for messages.
    pub fn read_rest(&mut self, len: u64, what: impl Fn() -> String) -> Result<Vec<u8>, DataError> {
        let expected = self.pos.saturating_add(len);
        if let Some(stored) = self.raw_len() {
            self.check_total(stored, expected, &what)?;
        }
        check_memory(&self.path, &what, len)?;
        let reserve = match self.stored_len {
            Some(stored) if self.gzip => len.min(stored.saturating_mul(GZIP_RESERVE_RATIO)),
            _ => len,
        };
        let mut buf = reserved(&self.path, &what, reserve)?;
        self.read_limited(len.saturating_add(1), &mut buf)?;
        let got = buf.len() as u64;
        if got < len {
            Err(self.truncated(what(), expected))
        } else if got > len {
            Err(DataError::TrailingBytes {
                path: self.path.clone(),
                what: what(),
                expected,
                got: None,
                gzip: self.gzip,
            })
        } else {
            Ok(buf)
        }
    }

    /// [`DataError::Truncated`]: `what` needs `expected` bytes in all, the file ended after
    /// the bytes read so far.
    pub fn truncated(&self, what: String, expected: u64) -> DataError {
        DataError::Truncated {
            path: self.path.clone(),
            what,
            expected,
            got: self.pos,
            gzip: self.gzip,
        }
    }

    /// Checks a raw file's known length against the `expected` total.
    fn check_total(
        &self,
        stored: u64,
        expected: u64,
        what: &impl Fn() -> String,
    ) -> Result<(), DataError> {
        if stored < expected {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                what: what(),
                expected,
                got: stored,
                gzip: false,
            });
        }
        if stored > expected {
            return Err(DataError::TrailingBytes {
                path: self.path.clone(),
                what: what(),
                expected,
                got: Some(stored),
                gzip: false,
            });
        }
        Ok(())
    }

    /// Appends at most `limit` next bytes to `buf`.
    fn read_limited(&mut self, limit: u64, buf: &mut Vec<u8>) -> Result<(), DataError> {
        let n = (&mut self.reader)
            .take(limit)
            .read_to_end(buf)
            .map_err(|e| self.read_error(e))?;
        self.pos += n as u64;
        Ok(())
    }

    /// A gzip stream that does not decode is corrupt data; anything else failed to read.
    fn read_error(&self, e: io::Error) -> DataError {
        use io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
        if self.gzip && matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof) {
            DataError::CorruptGzip {
                path: self.path.clone(),
                reason: e.to_string(),
            }
        } else {
            DataError::io(&self.path, e)
        }
    }
}

/// Refuses to hold `bytes` (of `what`, read from or for `path`) when they are more than the
/// memory available now, so a size from a file or an option is refused before it is
/// allocated rather than after the system has started to run out.
pub(crate) fn check_memory(
    path: &Path,
    what: &impl Fn() -> String,
    bytes: u64,
) -> Result<(), DataError> {
    match available_memory() {
        Some(available) if bytes > available => Err(DataError::OutOfMemory {
            path: path.to_path_buf(),
            what: what(),
            bytes,
            available: Some(available),
        }),
        _ => Ok(()),
    }
}

/// An empty buffer with room for `bytes`, or [`DataError::OutOfMemory`] when the allocator
/// refuses them.
pub(crate) fn reserved(
    path: &Path,
    what: &impl Fn() -> String,
    bytes: u64,
) -> Result<Vec<u8>, DataError> {
    let mut buf = Vec::new();
    usize::try_from(bytes)
        .ok()
        .and_then(|b| buf.try_reserve_exact(b).ok())
        .ok_or_else(|| DataError::OutOfMemory {
            path: path.to_path_buf(),
            what: what(),
            bytes,
            available: None,
        })?;
    Ok(buf)
}

/// The memory the system can give without swapping (Linux's `MemAvailable`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}
