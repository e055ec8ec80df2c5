//! Words labelled by language, from the word lists Debian ships in `/usr/share/dict`: the data
//! of "which language is this word?", classified character by character.
//!
//! # The pipeline (the same in `benches/word_language_torch.py`)
//! 1. Each list of [`WORD_LISTS`] is read (UTF-8, or ISO-8859-1 for a list that is not valid
//!    UTF-8: Debian's `wswedish` is Latin-1, the others are UTF-8).
//! 2. [`clean_words`]: every line is trimmed and lowercased; lines that are empty or hold
//!    anything but letters (apostrophes as in English possessives, hyphens, digits, spaces)
//!    are dropped; repeats are dropped, keeping the first.
//! 3. [`select_words`]: the words are ordered by a seeded 64-bit hash ([`word_key`]: FNV-1a of
//!    the UTF-8 bytes, mixed with the seed by SplitMix64's finaliser; ties by the words' bytes)
//!    and the first `words_per_language` are taken. A hash instead of a shuffle so that a
//!    script in another language draws exactly the same words with ten lines of code.
//! 4. The first 90% of each language's selection ([`TRAIN_FRACTION`]) train, the rest test.
//!
//! A word that is in two lists (`radio` is Italian, Spanish and more) keeps both labels: the
//! task's irreducible error.

use std::io;
use std::path::{Path, PathBuf};

use super::sequence::SequenceDataSet;
use super::text::{decode_text, split_train_validation, TextEncoding, TRAIN_FRACTION};
use super::vocab::CharVocab;
use crate::error::{Error, Result};

/// Where Debian installs its word lists.
pub const DICT_DIR: &str = "/usr/share/dict";

/// The number of words drawn per language by default.
pub const WORDS_PER_LANGUAGE: usize = 20_000;

/// One of Debian's word lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordList {
    /// The language's name in English, as a class name.
    pub language: &'static str,
    /// The Debian package that installs the list.
    pub package: &'static str,
    /// The file's name in [`DICT_DIR`].
    pub file: &'static str,
    /// The encoding Debian ships the file in (checked on Debian 12 "bookworm"). A file whose
    /// bytes are valid UTF-8 is read as UTF-8 whatever this says.
    pub encoding: TextEncoding,
}

/// The eight word lists of the word-language task, in class order (class `k` is
/// `WORD_LISTS[k]`).
pub const WORD_LISTS: [WordList; 8] = [
    WordList {
        language: "English",
        package: "wamerican",
        file: "american-english",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "German",
        package: "wngerman",
        file: "ngerman",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "French",
        package: "wfrench",
        file: "french",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "Spanish",
        package: "wspanish",
        file: "spanish",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "Italian",
        package: "witalian",
        file: "italian",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "Dutch",
        package: "wdutch",
        file: "dutch",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "Portuguese",
        package: "wportuguese",
        file: "portuguese",
        encoding: TextEncoding::Utf8,
    },
    WordList {
        language: "Swedish",
        package: "wswedish",
        file: "swedish",
        encoding: TextEncoding::Latin1,
    },
];

/// The command that installs every list of [`WORD_LISTS`] on Debian or Ubuntu.
///
/// ```
/// assert_eq!(
///     recurrent::data::apt_get_command(),
///     "sudo apt-get install wamerican wngerman wfrench wspanish witalian wdutch wportuguese wswedish"
/// );
/// ```
pub fn apt_get_command() -> String {
    let packages: Vec<&str> = WORD_LISTS.iter().map(|l| l.package).collect();
    format!("sudo apt-get install {}", packages.join(" "))
}

/// Cleans a word list's text: one word per line, trimmed and lowercased; lines that are empty
/// or contain a character that is not a letter ([`char::is_alphabetic`]) are dropped, and so are
/// repeats (the first is kept). The order is the file's.
///
/// ```
/// let words = recurrent::data::clean_words("Aaron\naaron\nAaron's\nÉté\nA-aktie\n\n06\nzoo\r\n");
/// assert_eq!(words, ["aaron", "été", "zoo"]);
/// ```
pub fn clean_words(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .map(|line| line.trim().to_lowercase())
        .filter(|w| !w.is_empty() && w.chars().all(char::is_alphabetic))
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// SplitMix64's output function (Steele, Lea and Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seeded sort key of a word: `splitmix64(fnv1a64(utf8 bytes) ^ splitmix64(seed))`, where
/// FNV-1a starts at `0xcbf29ce484222325` and multiplies by `0x100000001b3`, and
/// `splitmix64(x)` adds `0x9e3779b97f4a7c15` then applies SplitMix64's finaliser. All arithmetic
/// wraps at 64 bits.
///
/// ```
/// use recurrent::data::word_key;
/// assert_ne!(word_key("hello", 1), word_key("hello", 2));
/// assert_eq!(word_key("hello", 1), word_key("hello", 1));
/// ```
pub fn word_key(word: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in word.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h ^ splitmix64(seed))
}

/// The first `count` of `words` in the order of [`word_key`] under `seed` (ties by the words'
/// bytes): a seeded random draw without repeats, in random order.
///
/// ```
/// let words: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
/// let some = recurrent::data::select_words(&words, 2, 7).unwrap();
/// assert_eq!(some.len(), 2);
/// assert_eq!(some, recurrent::data::select_words(&words, 2, 7).unwrap());
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] if there are fewer than `count` words.
pub fn select_words(words: &[String], count: usize, seed: u64) -> Result<Vec<String>> {
    if words.len() < count {
        return Err(Error::invalid(format!(
            "select_words: {count} words asked of a list of {}",
            words.len()
        )));
    }
    let mut keyed: Vec<(u64, &String)> = words.iter().map(|w| (word_key(w, seed), w)).collect();
    keyed.sort_unstable();
    Ok(keyed
        .into_iter()
        .take(count)
        .map(|(_, w)| w.clone())
        .collect())
}

/// Reads and cleans one word list from `dir` (normally [`DICT_DIR`]).
///
/// ```
/// use recurrent::data::{read_word_list, WORD_LISTS};
/// # fn main() -> recurrent::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let swedish = &WORD_LISTS[7]; // Latin-1 on Debian
/// std::fs::write(dir.path().join(swedish.file), b"\xc5sa\n\xe4lg\n\xe4lg's\n")?;
/// assert_eq!(read_word_list(dir.path(), swedish)?, ["åsa", "älg"]);
///
/// let missing = read_word_list(dir.path(), &WORD_LISTS[0]).unwrap_err().to_string();
/// assert!(missing.contains("apt-get install wamerican"), "{missing}");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Io`] of kind `NotFound` if the file is missing, saying which package installs it and
/// the [`apt_get_command`] for all of them; [`Error::Io`] if it cannot be read;
/// [`Error::Format`] if a list expected in UTF-8 is not valid UTF-8 (naming the file and the byte
/// offset).
pub fn read_word_list(dir: &Path, list: &WordList) -> Result<Vec<String>> {
    let path = dir.join(list.file);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::Io(io::Error::new(
                e.kind(),
                format!(
                    "the {} word list {} is missing (Debian package {}); install the word lists \
                     with: {}",
                    list.language,
                    path.display(),
                    list.package,
                    apt_get_command()
                ),
            ))
        } else {
            Error::Io(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    })?;
    let text = match decode_text(&bytes, TextEncoding::Utf8) {
        Ok(text) => text,
        Err(_) if list.encoding == TextEncoding::Latin1 => {
            decode_text(&bytes, TextEncoding::Latin1)?
        }
        Err(Error::Format(msg)) => return Err(Error::Format(format!("{}: {msg}", path.display()))),
        Err(e) => return Err(e),
    };
    Ok(clean_words(&text))
}

/// Words with their class labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelledWords {
    /// The words (lowercase letters).
    pub words: Vec<String>,
    /// The class of each word: an index into [`WordLanguages::languages`].
    pub labels: Vec<usize>,
}

impl LabelledWords {
    /// The number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True if there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words as a [`SequenceDataSet`] of character ids (unknown characters become
    /// [`CharVocab::UNK_ID`]; padding is [`CharVocab::PAD_ID`]), with their labels.
    ///
    /// # Shapes
    /// Batches of `inputs` `[b, longest word in the batch]`.
    ///
    /// ```
    /// use recurrent::data::{CharVocab, LabelledWords};
    /// # fn main() -> recurrent::Result<()> {
    /// let words = LabelledWords {
    ///     words: vec!["hund".into(), "chat".into(), "o".into()],
    ///     labels: vec![1, 2, 3],
    /// };
    /// let vocab = CharVocab::from_text("hundchat");
    /// let set = words.to_dataset(&vocab, 2, 0)?;
    /// let batch = set.batch(&[1, 2])?;
    /// assert_eq!(batch.inputs.dim(), (2, 4)); // "chat" and "o" padded to 4
    /// assert_eq!(batch.inputs.row(1).to_vec(), [CharVocab::UNK_ID, 0, 0, 0]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`SequenceDataSet::new`] (no words, a `batch_size` of 0).
    pub fn to_dataset(
        &self,
        vocab: &CharVocab,
        batch_size: usize,
        seed: u64,
    ) -> Result<SequenceDataSet<Vec<usize>>> {
        let ids = self.words.iter().map(|w| vocab.encode(w)).collect();
        Ok(
            SequenceDataSet::new(ids, self.labels.clone(), batch_size, seed)?
                .with_padding(CharVocab::PAD_ID),
        )
    }
}

/// The word-language task: the languages (class names) and the train and test words.
///
/// # Example
///
/// ```no_run
/// use recurrent::data::{CharVocab, WordLanguages, DICT_DIR, WORDS_PER_LANGUAGE};
///
/// # fn main() -> recurrent::Result<()> {
/// let data = WordLanguages::load(DICT_DIR.as_ref(), WORDS_PER_LANGUAGE, 42)?;
/// assert_eq!(data.languages.len(), 8);
/// assert_eq!((data.train.len(), data.test.len()), (8 * 18_000, 8 * 2_000));
///
/// let vocab = CharVocab::from_chars(data.train.words.iter().flat_map(|w| w.chars()));
/// let mut train = data.train.to_dataset(&vocab, 64, 42)?;
/// let batch = train.next_batch(); // inputs [64, longest], lengths, labels
/// assert_eq!(batch.len(), 64);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordLanguages {
    /// The class names, in label order.
    pub languages: Vec<String>,
    /// The first 90% of each language's draw, languages one after the other.
    pub train: LabelledWords,
    /// The last 10% of each language's draw.
    pub test: LabelledWords,
}

impl WordLanguages {
    /// The eight languages of [`WORD_LISTS`] from `dir` (normally [`DICT_DIR`]), drawing
    /// `words_per_language` words of each with `seed`.
    ///
    /// # Errors
    /// As [`read_word_list`] (a missing list names the apt-get command) and
    /// [`Error::InvalidArgument`] if a list has fewer than `words_per_language` words after
    /// cleaning or `words_per_language` is 0.
    pub fn load(dir: &Path, words_per_language: usize, seed: u64) -> Result<WordLanguages> {
        WordLanguages::load_lists(dir, &WORD_LISTS, words_per_language, seed)
    }

    /// As [`load`](WordLanguages::load), with the given lists (class `k` is `lists[k]`).
    ///
    /// # Errors
    /// As [`load`](WordLanguages::load), and [`Error::InvalidArgument`] if `lists` is empty.
    pub fn load_lists(
        dir: &Path,
        lists: &[WordList],
        words_per_language: usize,
        seed: u64,
    ) -> Result<WordLanguages> {
        if lists.is_empty() || words_per_language == 0 {
            return Err(Error::invalid(format!(
                "WordLanguages::load: {} lists and {words_per_language} words per language; both \
                 must be positive",
                lists.len()
            )));
        }
        let mut train = LabelledWords::default();
        let mut test = LabelledWords::default();
        for (label, list) in lists.iter().enumerate() {
            let words = read_word_list(dir, list)?;
            let chosen = select_words(&words, words_per_language, seed).map_err(|_| {
                Error::invalid(format!(
                    "WordLanguages::load: {} has {} distinct words after cleaning, fewer than the \
                     {words_per_language} asked",
                    path_of(dir, list).display(),
                    words.len()
                ))
            })?;
            let (tr, te) = split_train_validation(&chosen, TRAIN_FRACTION)?;
            for (part, words) in [(&mut train, tr), (&mut test, te)] {
                part.words.extend_from_slice(words);
                part.labels.extend(std::iter::repeat_n(label, words.len()));
            }
        }
        Ok(WordLanguages {
            languages: lists.iter().map(|l| l.language.to_string()).collect(),
            train,
            test,
        })
    }
}

fn path_of(dir: &Path, list: &WordList) -> PathBuf {
    dir.join(list.file)
}
