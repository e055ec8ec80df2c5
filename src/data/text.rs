//! Reading text files (UTF-8 or ISO-8859-1, plain or gzip) and the train/validation split of a
//! corpus.
//!
//! Every malformed input is an [`Error::Format`] naming the file and the byte offset of the
//! first bad byte (counted in the decompressed text), never a panic and never a silent
//! replacement character.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::idx::is_gzip;
use crate::error::{Error, Result};

/// The share of a corpus that trains: the first 90% of its tokens train, the last 10% validate
/// (the convention of `shared/text/README.md` and of the well-known character-level baselines).
pub const TRAIN_FRACTION: f64 = 0.9;

/// How the bytes of a text file encode its characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8: a malformed sequence is an error.
    Utf8,
    /// ISO-8859-1 (Latin-1): every byte is the character of the same code point (U+0000 to
    /// U+00FF), so no input is malformed.
    Latin1,
}

/// Reads a UTF-8 text file, plain or gzip-compressed (recognised by its first two bytes
/// `1f 8b`, whatever the file is called).
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("tiny.txt");
/// std::fs::write(&path, "Wie geht's? Ça va.\n")?;
/// assert_eq!(recurrent::data::read_text(&path)?, "Wie geht's? Ça va.\n");
///
/// std::fs::write(&path, b"ok\xff")?; // 0xff never occurs in UTF-8
/// let err = recurrent::data::read_text(&path).unwrap_err().to_string();
/// assert!(err.contains("byte offset 2"), "{err}");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Io`] if the file cannot be read (the message names it); [`Error::Format`] if the
/// gzip stream is corrupt or the text is not valid UTF-8 (the message names the file and the
/// byte offset, in the decompressed text, of the first invalid byte).
pub fn read_text(path: &Path) -> Result<String> {
    read_text_with_encoding(path, TextEncoding::Utf8)
}

/// Reads a text file in the given encoding, plain or gzip-compressed.
///
/// ```
/// use recurrent::data::{read_text_with_encoding, TextEncoding};
/// # fn main() -> recurrent::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("svenska");
/// std::fs::write(&path, b"\xe5r\n")?; // "år" in ISO-8859-1
/// assert_eq!(read_text_with_encoding(&path, TextEncoding::Latin1)?, "år\n");
/// assert!(read_text_with_encoding(&path, TextEncoding::Utf8).is_err());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`read_text`] (ISO-8859-1 text is never malformed).
pub fn read_text_with_encoding(path: &Path, encoding: TextEncoding) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    decode_text(&bytes, encoding).map_err(|e| match e {
        Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Decodes the bytes of a text file, gunzipping them first if they start with the gzip magic
/// bytes `1f 8b`.
///
/// ```
/// use recurrent::data::{decode_text, TextEncoding};
/// assert_eq!(decode_text("naïve".as_bytes(), TextEncoding::Utf8).unwrap(), "naïve");
/// assert_eq!(decode_text(b"na\xefve", TextEncoding::Latin1).unwrap(), "naïve");
/// let err = decode_text(b"na\xefve", TextEncoding::Utf8).unwrap_err().to_string();
/// assert!(err.contains("invalid UTF-8 at byte offset 2"), "{err}");
/// ```
///
/// # Errors
/// [`Error::Format`] if the gzip stream is corrupt or, for [`TextEncoding::Utf8`], the text is
/// not valid UTF-8 (the message gives the byte offset of the first invalid byte).
pub fn decode_text(bytes: &[u8], encoding: TextEncoding) -> Result<String> {
    let gzipped = is_gzip(bytes);
    let raw;
    let bytes = if gzipped {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::Format(format!("corrupt gzip stream: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    match encoding {
        TextEncoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        TextEncoding::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => {
                let at = e.valid_up_to();
                let shown: Vec<String> = bytes[at..bytes.len().min(at + 4)]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Err(Error::Format(format!(
                    "invalid UTF-8 at byte offset {at}{} (bytes from there: {})",
                    if gzipped {
                        " of the decompressed text"
                    } else {
                        ""
                    },
                    shown.join(" "),
                )))
            }
        },
    }
}

/// Splits a token stream into its first `train_fraction` (training) and the rest (validation):
/// the training part has `floor(n * train_fraction)` tokens, computed in `f64` as Python's
/// `int(n * train_fraction)` does. Use [`TRAIN_FRACTION`] (0.9) for the corpora's convention.
///
/// # Shapes
/// `tokens: [n]` gives `([floor(n f)], [n - floor(n f)])`.
///
/// ```
/// use recurrent::data::{split_train_validation, TRAIN_FRACTION};
/// let ids: Vec<usize> = (0..25).collect();
/// let (train, validation) = split_train_validation(&ids, TRAIN_FRACTION).unwrap();
/// assert_eq!((train.len(), validation.len()), (22, 3)); // floor(25 * 0.9) = 22
/// assert_eq!(validation, &[22, 23, 24]);
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] if `train_fraction` is not in `[0, 1]`.
pub fn split_train_validation<T>(tokens: &[T], train_fraction: f64) -> Result<(&[T], &[T])> {
    if !(0.0..=1.0).contains(&train_fraction) {
        return Err(Error::invalid(format!(
            "split_train_validation: train_fraction must be in [0, 1], got {train_fraction}"
        )));
    }
    // `as` truncates toward zero and saturates, like Python's int() on a non-negative float.
    let n_train = ((tokens.len() as f64 * train_fraction) as usize).min(tokens.len());
    Ok(tokens.split_at(n_train))
}
