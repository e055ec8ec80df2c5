//! Reading and writing IDX files, the format of the MNIST database.
//!
//! An IDX file is a 4-byte big-endian magic number, one big-endian `u32` per dimension, then the
//! elements in row-major order:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0, 1 | always zero |
//! | 2 | element type: `0x08` unsigned byte (the only type MNIST uses and this reader accepts) |
//! | 3 | number of dimensions `ndim` |
//! | 4 .. 4 + 4·ndim | the dimensions, big-endian `u32` |
//! | the rest | exactly `product(dims)` elements |
//!
//! Files may be gzip-compressed; the reader recognises gzip by its magic bytes `1f 8b`, whatever
//! the file is called. Every malformed input is an [`Error::Format`] (never a panic), and the reader
//! allocates no more than the bytes actually present, whatever the header claims, and never more
//! than a limit ([`DEFAULT_MAX_IDX_BYTES`], 1 GiB, unless given with [`parse_idx_with_limit`]).

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use byteorder::{BigEndian, ReadBytesExt, WriteBytesExt};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{Error, Result};

/// The IDX type code of unsigned bytes, the element type of every MNIST file.
pub const IDX_UBYTE: u8 = 0x08;

/// The most dimensions an IDX file may declare here (MNIST uses 1 for labels and 3 for images).
pub const MAX_IDX_DIMS: usize = 4;

/// The default limit on an IDX file's payload (after decompression): 1 GiB, about 22 times
/// MNIST's largest file (47 MB of training images). A header declaring more is an error before
/// anything is read, so a small gzip file that inflates to gigabytes ("gzip bomb") costs neither
/// the memory nor the time; [`parse_idx_with_limit`] and [`read_idx_with_limit`] change it.
pub const DEFAULT_MAX_IDX_BYTES: usize = 1 << 30;

/// The two magic bytes that start every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True if `bytes` starts like a gzip stream.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[..2] == GZIP_MAGIC
}

/// An IDX array of unsigned bytes: its dimensions and its elements in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (MNIST images: `[n, 28, 28]`; labels: `[n]`).
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// An array from its dimensions and elements, checking that they fit the IDX format:
    /// 1 to [`MAX_IDX_DIMS`] dimensions, each at most `u32::MAX`, whose product is `data.len()`.
    pub fn new(dims: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        let array = IdxArray { dims, data };
        array.validate()?;
        Ok(array)
    }

    /// The number of elements the dimensions describe.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if the array holds no elements (some dimension is zero).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn validate(&self) -> Result<()> {
        if self.dims.is_empty() || self.dims.len() > MAX_IDX_DIMS {
            return Err(Error::invalid(format!(
                "an IDX array needs 1 to {MAX_IDX_DIMS} dimensions, got {}",
                self.dims.len()
            )));
        }
        if let Some(d) = self.dims.iter().find(|&&d| u32::try_from(d).is_err()) {
            return Err(Error::invalid(format!(
                "IDX dimension {d} does not fit in 32 bits"
            )));
        }
        match checked_product(&self.dims) {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(Error::shape(
                "IdxArray",
                format!("{} elements", self.data.len()),
                &self.dims,
            )),
        }
    }
}

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => return None,
    })
}

/// Reads an IDX file, plain or gzip-compressed.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, [`Error::Format`] if its contents are not a valid
/// unsigned-byte IDX array (see [`parse_idx`]); the message names the file.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    read_idx_with_limit(path, DEFAULT_MAX_IDX_BYTES)
}

/// [`read_idx`] with a limit of `max_payload_bytes` on the payload instead of
/// [`DEFAULT_MAX_IDX_BYTES`] (see [`parse_idx_with_limit`]).
///
/// # Errors
/// As [`read_idx`].
pub fn read_idx_with_limit(path: &Path, max_payload_bytes: usize) -> Result<IdxArray> {
    let bytes = fs::read(path).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    parse_idx_with_limit(&bytes, max_payload_bytes).map_err(|e| match e {
        Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Parses the bytes of an IDX file, plain or gzip-compressed (recognised by the bytes `1f 8b`).
///
/// # Errors
/// [`Error::Format`] if the magic number's first two bytes are not zero, the element type is not
/// unsigned byte (`0x08`), there are 0 or more than [`MAX_IDX_DIMS`] dimensions, their product
/// overflows, the payload is shorter (truncated) or longer (trailing bytes) than the dimensions
/// say, the payload exceeds [`DEFAULT_MAX_IDX_BYTES`], or the gzip stream is corrupt.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    parse_idx_with_limit(bytes, DEFAULT_MAX_IDX_BYTES)
}

/// [`parse_idx`] with a limit of `max_payload_bytes` on the payload (the product of the
/// dimensions, after decompression).
///
/// The limit is checked against the header before the payload is read, and the payload is then
/// read incrementally into a buffer that grows with the bytes actually decoded and never beyond
/// the declared size; trailing bytes are counted up to `max_payload_bytes` more, not kept.
///
/// # Errors
/// As [`parse_idx`], with the limit named when the header declares more.
pub fn parse_idx_with_limit(bytes: &[u8], max_payload_bytes: usize) -> Result<IdxArray> {
    if is_gzip(bytes) {
        read_idx_stream(MultiGzDecoder::new(bytes), max_payload_bytes)
    } else {
        read_idx_stream(bytes, max_payload_bytes)
    }
}

/// Reads into `buf` until it is full or the stream ends; the number of bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Maps a read error inside the stream to a format error (the bytes are in memory, so any failure
/// is corrupt data: a bad gzip stream or an early end).
fn corrupt(what: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Format(format!(
            "truncated IDX data: the stream ends inside the {what}"
        ))
    } else {
        Error::Format(format!("corrupt IDX data while reading the {what}: {e}"))
    }
}

fn read_idx_stream<R: Read>(mut r: R, max_payload_bytes: usize) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|e| corrupt("magic number", e))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::Format(format!(
            "not an IDX file: the magic number {:02x} {:02x} {:02x} {:02x} must start with two zero bytes",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    let code = magic[2];
    if code != IDX_UBYTE {
        return Err(Error::Format(match type_name(code) {
            Some(name) => format!(
                "unsupported IDX element type 0x{code:02x} ({name}); only 0x08 (unsigned byte) is supported"
            ),
            None => format!("unknown IDX element type code 0x{code:02x}"),
        }));
    }
    let ndim = usize::from(magic[3]);
    if ndim == 0 || ndim > MAX_IDX_DIMS {
        return Err(Error::Format(format!(
            "unsupported IDX dimension count {ndim}; expected 1 to {MAX_IDX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let d = r
            .read_u32::<BigEndian>()
            .map_err(|e| corrupt("dimensions", e))?;
        let d = usize::try_from(d)
            .map_err(|_| Error::Format(format!("IDX dimension {d} does not fit in memory")))?;
        dims.push(d);
    }
    let expected = checked_product(&dims).ok_or_else(|| {
        Error::Format(format!(
            "IDX dimensions {dims:?} describe more elements than fit in memory"
        ))
    })?;
    if expected > max_payload_bytes {
        return Err(Error::Format(format!(
            "IDX dimensions {dims:?} declare {expected} payload bytes, more than the limit of \
             {max_payload_bytes} (see parse_idx_with_limit)"
        )));
    }
    // The buffer grows (doubling, from 64 KiB) with the bytes actually present, and never past
    // the declared size: a lying header or a gzip bomb cannot make a large allocation.
    let mut data: Vec<u8> = Vec::new();
    while data.len() < expected {
        let start = data.len();
        let chunk = (expected - start).min(start.max(1 << 16));
        data.try_reserve_exact(chunk).map_err(|_| {
            Error::Format(format!(
                "IDX dimensions {dims:?}: cannot allocate {expected} payload bytes"
            ))
        })?;
        data.resize(start + chunk, 0);
        let got = read_full(&mut r, &mut data[start..]).map_err(|e| corrupt("payload", e))?;
        if got < chunk {
            return Err(Error::Format(format!(
                "truncated IDX data: dimensions {dims:?} need {expected} payload bytes, found {}",
                start + got
            )));
        }
    }
    let mut one = [0u8; 1];
    if read_full(&mut r, &mut one).map_err(|e| corrupt("trailing data", e))? > 0 {
        // Count the rest, to name it, without keeping it, and only so far.
        let cap = max_payload_bytes as u64;
        let rest = io::copy(&mut r.by_ref().take(cap), &mut io::sink())
            .map_err(|e| corrupt("trailing data", e))?
            + 1;
        let count = if rest > cap {
            format!("more than {cap}")
        } else {
            rest.to_string()
        };
        return Err(Error::Format(format!(
            "IDX data has {count} trailing bytes after the {expected} payload bytes of dimensions {dims:?}"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Encodes an array as the bytes of an (uncompressed) IDX file.
///
/// # Errors
/// [`Error::InvalidArgument`] or [`Error::Shape`] if the array does not fit the format (see
/// [`IdxArray::new`]).
pub fn encode_idx(array: &IdxArray) -> Result<Vec<u8>> {
    array.validate()?;
    let mut out = Vec::with_capacity(4 + 4 * array.dims.len() + array.data.len());
    write_idx_to(&mut out, array)?;
    Ok(out)
}

fn write_idx_to<W: Write>(w: &mut W, array: &IdxArray) -> io::Result<()> {
    // `validate` has checked the dimension count (<= 4) and that each dimension fits in u32.
    w.write_all(&[0, 0, IDX_UBYTE, array.dims.len() as u8])?;
    for &d in &array.dims {
        w.write_u32::<BigEndian>(d as u32)?;
    }
    w.write_all(&array.data)
}

/// Writes an array as an IDX file, gzip-compressed if `gzip` is true.
///
/// # Errors
/// [`Error::InvalidArgument`] or [`Error::Shape`] if the array does not fit the format (see
/// [`IdxArray::new`]); [`Error::Io`] if the file cannot be written.
pub fn write_idx(path: &Path, array: &IdxArray, gzip: bool) -> Result<()> {
    array.validate()?;
    let write = || -> io::Result<()> {
        let file = io::BufWriter::new(fs::File::create(path)?);
        if gzip {
            let mut enc = GzEncoder::new(file, Compression::default());
            write_idx_to(&mut enc, array)?;
            enc.finish()?.flush()
        } else {
            let mut file = file;
            write_idx_to(&mut file, array)?;
            file.flush()
        }
    };
    write().map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", path.display()),
        ))
    })
}
