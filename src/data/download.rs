//! Finding the MNIST files and, with the `download` feature, fetching missing ones.

use std::env;
#[cfg(feature = "download")]
use std::fs;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::idx::is_gzip;
use crate::error::{Error, Result};

/// One file of a data set: its name in the data folder and on the mirrors, and the SHA-256 of its
/// decompressed bytes (hex, lower case), which identifies the content whatever the gzip wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistFile {
    /// The file name, for example `"train-images-idx3-ubyte.gz"`.
    pub name: &'static str,
    /// SHA-256 of the decompressed bytes, 64 lower-case hex digits.
    pub sha256: &'static str,
}

/// The four MNIST files (LeCun, Cortes, Burges; CC BY-SA 3.0) with the SHA-256 of their
/// decompressed contents: training images, training labels, test images, test labels.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte.gz",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Public mirrors of the MNIST files, tried in this order by [`ensure_mnist`].
pub const MNIST_MIRRORS: [&str; 3] = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// The data folder used when neither a command-line folder nor `MNIST_DIR` is given.
pub const DEFAULT_DATA_DIR: &str = "data/mnist";

/// The largest response accepted from a mirror (the biggest MNIST file is ~10 MB compressed,
/// 47 MB if a server decompresses it on the way).
#[cfg(feature = "download")]
const MAX_DOWNLOAD_BYTES: u64 = 128 * 1024 * 1024;

/// The MNIST folder to use: `cli` if given, else the environment variable `MNIST_DIR` if set and
/// not empty, else [`DEFAULT_DATA_DIR`] (relative to the working directory).
pub fn resolve_data_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    match env::var_os("MNIST_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// The path of `name` in `dir`, or of its decompressed form (`name` without `.gz`), if either
/// exists.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    let plain = dir.join(name.strip_suffix(".gz")?);
    plain.is_file().then_some(plain)
}

/// Like [`find`], with an [`Error::Io`] (not found) naming both candidates.
pub(crate) fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    find(dir, name).ok_or_else(|| {
        Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found (nor its decompressed form); call `ensure_mnist` or see its docs",
                dir.join(name).display()
            ),
        ))
    })
}

/// Makes sure `dir` holds the four [`MNIST_FILES`], downloading missing ones from
/// [`MNIST_MIRRORS`]; see [`ensure_mnist_from`].
///
/// # Errors
/// As [`ensure_files_from`].
pub fn ensure_mnist(dir: &Path) -> Result<()> {
    ensure_mnist_from(dir, &MNIST_MIRRORS)
}

/// Makes sure `dir` holds the four [`MNIST_FILES`], downloading missing ones from `mirrors`
/// (base URLs, tried in order); see [`ensure_files_from`].
///
/// # Errors
/// As [`ensure_files_from`].
pub fn ensure_mnist_from(dir: &Path, mirrors: &[&str]) -> Result<()> {
    ensure_files_from(dir, &MNIST_FILES, mirrors)
}

/// Makes sure `dir` holds every file of `files`, downloading the missing ones.
///
/// A file counts as present if `dir/name` or its decompressed form (`name` without `.gz`) exists;
/// present files are not re-checked (use [`file_sha256`] for that). With the `download` feature
/// (on by default), each missing file is fetched from `mirrors` in turn (URL = mirror + name).
/// A download is kept only if the SHA-256 of its decompressed bytes matches `sha256`; it is then
/// written atomically (a temporary file in `dir`, renamed), so a failed or corrupt download never
/// leaves a file behind. Each attempt is logged to stderr. A mirror that serves the content
/// already decompressed is accepted, and the file is stored gzip-compressed under its name.
///
/// # Errors
/// [`Error::Io`] if files are still missing (offline, every mirror failed, or the `download`
/// feature is off): the message lists which files to put in which folder, and where to get them,
/// followed by what each attempt reported. [`Error::Io`] also if `dir` cannot be created or
/// written.
pub fn ensure_files_from(dir: &Path, files: &[MnistFile], mirrors: &[&str]) -> Result<()> {
    let missing: Vec<&MnistFile> = files
        .iter()
        .filter(|f| find(dir, f.name).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "download")]
    {
        fs::create_dir_all(dir).map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!("cannot create the data folder {}: {e}", dir.display()),
            ))
        })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(20)))
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .into();
        let mut failures = Vec::new();
        let mut still_missing = Vec::new();
        for file in missing {
            if !download_one(&agent, dir, file, mirrors, &mut failures)? {
                still_missing.push(file);
            }
        }
        if still_missing.is_empty() {
            return Ok(());
        }
        Err(missing_error(dir, &still_missing, mirrors, &failures))
    }
    #[cfg(not(feature = "download"))]
    {
        let why = [
            "this build of `recurrent` has no `download` feature, so nothing was fetched"
                .to_string(),
        ];
        Err(missing_error(dir, &missing, mirrors, &why))
    }
}

/// Tries each mirror for `file`; `Ok(true)` once a verified copy is stored, `Ok(false)` if every
/// mirror failed (reasons appended to `failures`), `Err` if the verified copy cannot be written.
#[cfg(feature = "download")]
fn download_one(
    agent: &ureq::Agent,
    dir: &Path,
    file: &MnistFile,
    mirrors: &[&str],
    failures: &mut Vec<String>,
) -> Result<bool> {
    for mirror in mirrors {
        let url = if mirror.ends_with('/') {
            format!("{mirror}{}", file.name)
        } else {
            format!("{mirror}/{}", file.name)
        };
        eprintln!("recurrent: downloading {url}");
        let fetched = agent
            .get(&url)
            .call()
            .and_then(|r| {
                r.into_body()
                    .into_with_config()
                    .limit(MAX_DOWNLOAD_BYTES)
                    .read_to_vec()
            })
            .map_err(|e| e.to_string())
            .and_then(|bytes| verified(bytes, file.sha256));
        match fetched {
            Ok(bytes) => {
                let path = dir.join(file.name);
                write_atomically(&path, &bytes).map_err(|e| {
                    Error::Io(io::Error::new(
                        e.kind(),
                        format!("cannot write {}: {e}", path.display()),
                    ))
                })?;
                eprintln!(
                    "recurrent: saved {} ({} bytes, SHA-256 verified)",
                    path.display(),
                    bytes.len()
                );
                return Ok(true);
            }
            Err(why) => {
                eprintln!("recurrent: {url} rejected: {why}");
                failures.push(format!("{url}: {why}"));
            }
        }
    }
    Ok(false)
}

/// Checks downloaded bytes against the SHA-256 of the decompressed content and returns the bytes
/// to store (gzip-compressed, compressing them if the server sent them decompressed).
#[cfg(feature = "download")]
fn verified(bytes: Vec<u8>, expected: &str) -> std::result::Result<Vec<u8>, String> {
    let gzipped = is_gzip(&bytes);
    let digest = if gzipped {
        sha256_hex(MultiGzDecoder::new(bytes.as_slice()))
            .map_err(|e| format!("not a valid gzip file: {e}"))?
    } else {
        sha256_hex(bytes.as_slice()).map_err(|e| e.to_string())?
    };
    if !digest.eq_ignore_ascii_case(expected) {
        return Err(format!(
            "SHA-256 of the decompressed content is {digest}, expected {expected}"
        ));
    }
    if gzipped {
        return Ok(bytes);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::Write::write_all(&mut enc, &bytes).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`; on failure the
/// temporary file is removed.
#[cfg(feature = "download")]
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and per call, so concurrent downloads never share a temporary file.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}-{k}.part", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The "files missing" error: which files, which folder, where to get them, what went wrong.
fn missing_error(dir: &Path, missing: &[&MnistFile], mirrors: &[&str], why: &[String]) -> Error {
    let first = mirrors.first().copied().unwrap_or(MNIST_MIRRORS[0]);
    let sep = if first.ends_with('/') { "" } else { "/" };
    let mut msg = format!(
        "data files missing from {}: {}.\nPut these files (gzip-compressed, names unchanged) into {}:\n",
        dir.display(),
        missing.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
        dir.display()
    );
    for f in missing {
        msg += &format!("  {}  from {first}{sep}{}\n", f.name, f.name);
    }
    if mirrors.len() > 1 {
        msg += &format!("(other mirrors: {})\n", mirrors[1..].join(", "));
    }
    msg += "or point MNIST_DIR (or the program's data-folder option) at a folder that has them.";
    if !why.is_empty() {
        msg += "\nWhat happened:";
        for w in why {
            msg += &format!("\n  {w}");
        }
    }
    Error::Io(io::Error::new(io::ErrorKind::NotFound, msg))
}

/// SHA-256 (lower-case hex) of everything `r` yields, read in chunks.
fn sha256_hex<R: Read>(mut r: R) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => hasher.update(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// SHA-256 (64 lower-case hex digits) of a file's decompressed contents: gzip files (recognised by
/// their magic bytes) are decompressed on the fly, other files are hashed as they are. Compare
/// with [`MnistFile::sha256`].
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is a corrupt gzip stream.
pub fn file_sha256(path: &Path) -> Result<String> {
    let io_error = |e: io::Error| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot hash {}: {e}", path.display()),
        ))
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
    let gzipped = is_gzip(reader.fill_buf().map_err(io_error)?);
    if gzipped {
        sha256_hex(MultiGzDecoder::new(reader))
            .map_err(|e| Error::Format(format!("{}: corrupt gzip stream: {e}", path.display())))
    } else {
        sha256_hex(reader).map_err(io_error)
    }
}
