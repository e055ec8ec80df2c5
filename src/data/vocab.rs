//! A character vocabulary: UTF-8 characters to token ids and back, with padding and unknown ids,
//! and a text form to store beside a model's weights.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A character vocabulary: each Rust [`char`] (one Unicode scalar value, which UTF-8 encodes in
/// one to four bytes) is a token id.
///
/// # Ids
/// The layout of Keras's `TextVectorization` / `StringLookup`:
///
/// | id | token |
/// |---|---|
/// | [`CharVocab::PAD_ID`] = 0 | padding: fills batches up to their longest sequence; an `Embedding` with `mask_zero` (Keras) ignores it |
/// | [`CharVocab::UNK_ID`] = 1 | unknown: any character not in the vocabulary |
/// | 2, 3, ... | the known characters in ascending code point order |
///
/// Building sorts the characters, so the same text gives the same ids whatever order it lists
/// them in, on every machine. A language model's softmax has [`len`](CharVocab::len) classes;
/// padding and unknown are two of them that a model learns never to predict.
///
/// # Saving with a model
/// [`Display`](fmt::Display) (so `to_string()`) writes the vocabulary as one line of text, the
/// form to store in a checkpoint's metadata; [`FromStr`] (`str::parse`) reads it back and
/// rejects anything malformed:
///
/// ```text
/// char-vocab/1 pad=0 unk=1 chars=a,20,21,...
/// ```
///
/// `chars` lists the known characters' code points in hexadecimal, ascending, comma-separated
/// (empty for a vocabulary of no characters); the character of id `k + 2` is the `k`-th.
///
/// # Example
///
/// ```
/// use recurrent::data::CharVocab;
///
/// let vocab = CharVocab::from_text("hello, world");
/// assert_eq!(vocab.chars(), &[' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
/// assert_eq!(vocab.len(), 2 + 9); // padding, unknown, 9 characters
///
/// let ids = vocab.encode("held!"); // '!' is unknown
/// assert_eq!(ids, [6, 5, 7, 4, CharVocab::UNK_ID]);
/// assert_eq!(vocab.decode(&ids).unwrap(), "held\u{fffd}");
///
/// // Stored with the model and read back.
/// let saved = vocab.to_string();
/// assert_eq!(saved, "char-vocab/1 pad=0 unk=1 chars=20,2c,64,65,68,6c,6f,72,77");
/// let loaded: CharVocab = saved.parse().unwrap();
/// assert_eq!(loaded, vocab);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    /// Known characters, ascending; the id of `chars[k]` is `k + FIRST_CHAR_ID`.
    chars: Vec<char>,
    ids: HashMap<char, usize>,
}

/// The first token of the text form, with its version.
const HEADER: &str = "char-vocab/1";

impl CharVocab {
    /// The padding id (Keras's `mask_zero` convention: id 0 is padding).
    pub const PAD_ID: usize = 0;
    /// The id of every character the vocabulary does not know.
    pub const UNK_ID: usize = 1;
    /// The id of the smallest known character.
    pub const FIRST_CHAR_ID: usize = 2;
    /// What [`decode`](CharVocab::decode) writes for [`CharVocab::UNK_ID`]: U+FFFD, Unicode's
    /// replacement character.
    pub const UNK_CHAR: char = char::REPLACEMENT_CHARACTER;

    /// The vocabulary of the distinct characters of `text`, sorted by code point.
    ///
    /// ```
    /// use recurrent::data::CharVocab;
    /// let vocab = CharVocab::from_text("abracadabra");
    /// assert_eq!(vocab.chars(), &['a', 'b', 'c', 'd', 'r']);
    /// assert_eq!(vocab.id('a'), 2);
    /// ```
    pub fn from_text(text: &str) -> CharVocab {
        CharVocab::from_chars(text.chars())
    }

    /// The vocabulary of the distinct characters given (in any order, repeats allowed), sorted
    /// by code point.
    ///
    /// ```
    /// use recurrent::data::CharVocab;
    /// let words = ["über", "été"];
    /// let vocab = CharVocab::from_chars(words.iter().flat_map(|w| w.chars()));
    /// assert_eq!(vocab.chars(), &['b', 'e', 'r', 't', 'é', 'ü']);
    /// ```
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> CharVocab {
        let mut chars: Vec<char> = chars.into_iter().collect();
        chars.sort_unstable();
        chars.dedup();
        CharVocab::from_sorted(chars)
    }

    /// `chars` must be strictly ascending.
    fn from_sorted(chars: Vec<char>) -> CharVocab {
        let ids = chars
            .iter()
            .enumerate()
            .map(|(k, &c)| (c, k + Self::FIRST_CHAR_ID))
            .collect();
        CharVocab { chars, ids }
    }

    /// The number of ids: the known characters plus padding and unknown (the size of an
    /// embedding's table and of a language model's softmax).
    pub fn len(&self) -> usize {
        self.chars.len() + Self::FIRST_CHAR_ID
    }

    /// Always false: a vocabulary has at least the padding and unknown ids. (Use
    /// [`num_chars`](CharVocab::num_chars) for the number of known characters.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of known characters (`len() - 2`).
    pub fn num_chars(&self) -> usize {
        self.chars.len()
    }

    /// The known characters in id order (ascending code points); `chars()[k]` has id `k + 2`.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// True if `c` has an id of its own.
    pub fn contains(&self, c: char) -> bool {
        self.ids.contains_key(&c)
    }

    /// The id of `c`, [`CharVocab::UNK_ID`] if it is unknown.
    pub fn id(&self, c: char) -> usize {
        self.ids.get(&c).copied().unwrap_or(Self::UNK_ID)
    }

    /// The character of a known character's id; `None` for padding, unknown and ids past
    /// [`len`](CharVocab::len).
    pub fn char_of(&self, id: usize) -> Option<char> {
        id.checked_sub(Self::FIRST_CHAR_ID)
            .and_then(|k| self.chars.get(k).copied())
    }

    /// The ids of `text`'s characters, one per `char`; unknown characters become
    /// [`CharVocab::UNK_ID`].
    ///
    /// # Shapes
    /// `text` of `n` characters (not bytes) gives `[n]`.
    pub fn encode(&self, text: &str) -> Vec<usize> {
        text.chars().map(|c| self.id(c)).collect()
    }

    /// The ids of `text`'s characters, refusing unknown ones.
    ///
    /// ```
    /// use recurrent::data::CharVocab;
    /// let vocab = CharVocab::from_text("ab");
    /// assert_eq!(vocab.encode_strict("ba").unwrap(), [3, 2]);
    /// let err = vocab.encode_strict("abc").unwrap_err().to_string();
    /// assert!(err.contains("'c' (U+0063) at character 2"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first unknown character and its position (in
    /// characters).
    pub fn encode_strict(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                self.ids.get(&c).copied().ok_or_else(|| {
                    Error::invalid(format!(
                        "CharVocab::encode_strict: {c:?} (U+{:04X}) at character {i} is not in the \
                         vocabulary of {} characters",
                        u32::from(c),
                        self.chars.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of `ids`: padding ids are dropped, unknown ids become
    /// [`CharVocab::UNK_CHAR`] (U+FFFD).
    ///
    /// ```
    /// use recurrent::data::CharVocab;
    /// let vocab = CharVocab::from_text("ab");
    /// assert_eq!(vocab.decode(&[2, 3, 1, 0, 0]).unwrap(), "ab\u{fffd}");
    /// assert!(vocab.decode(&[4]).is_err()); // only ids 0..4 exist
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if an id is [`len`](CharVocab::len) or more.
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        let mut out = String::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            match id {
                Self::PAD_ID => {}
                Self::UNK_ID => out.push(Self::UNK_CHAR),
                _ => out.push(self.char_of(id).ok_or_else(|| {
                    Error::invalid(format!(
                        "CharVocab::decode: id {id} at position {i} is not below the vocabulary \
                         size {}",
                        self.len()
                    ))
                })?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for CharVocab {
    /// The one-line text form (see [`CharVocab`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HEADER} pad={} unk={} chars=",
            Self::PAD_ID,
            Self::UNK_ID
        )?;
        for (k, &c) in self.chars.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{:x}", u32::from(c))?;
        }
        Ok(())
    }
}

impl FromStr for CharVocab {
    type Err = Error;

    /// Reads the text form that [`Display`](fmt::Display) writes.
    ///
    /// # Errors
    /// [`Error::Format`] if the header is not `char-vocab/1`, the padding or unknown id is not
    /// the supported 0 and 1, a code point is not hexadecimal or not a Unicode scalar value, or
    /// the code points are not strictly ascending (a repeat or a changed order would silently
    /// change the ids a model was trained with).
    fn from_str(s: &str) -> Result<CharVocab> {
        let bad = |what: String| Error::Format(format!("CharVocab: {what}"));
        let mut fields = s.split(' ');
        let header = fields.next().unwrap_or("");
        if header != HEADER {
            let shown: String = s.chars().take(24).collect();
            return Err(bad(format!(
                "expected text starting with {HEADER:?}, got {shown:?}"
            )));
        }
        let mut field = |name: &str| -> Result<&str> {
            let f = fields
                .next()
                .ok_or_else(|| bad(format!("the field {name}= is missing")))?;
            f.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .ok_or_else(|| bad(format!("expected the field {name}=, got {f:?}")))
        };
        for (name, id) in [("pad", Self::PAD_ID), ("unk", Self::UNK_ID)] {
            let v = field(name)?;
            if v != id.to_string() {
                return Err(bad(format!(
                    "{name}={v} is not supported: this version uses {name}={id}"
                )));
            }
        }
        let list = field("chars")?;
        if let Some(extra) = fields.next() {
            return Err(bad(format!("unexpected text after the chars: {extra:?}")));
        }
        let mut chars = Vec::new();
        if !list.is_empty() {
            for (k, hex) in list.split(',').enumerate() {
                let valid = !hex.is_empty() && hex.len() <= 6;
                let code = u32::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| valid && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        bad(format!(
                            "character {k}: {hex:?} is not a hexadecimal code point"
                        ))
                    })?;
                let c = char::from_u32(code).ok_or_else(|| {
                    bad(format!(
                        "character {k}: U+{code:04X} is not a Unicode scalar value"
                    ))
                })?;
                if let Some(&prev) = chars.last() {
                    if c <= prev {
                        return Err(bad(format!(
                            "character {k}: U+{code:04X} does not follow U+{:04X} in ascending \
                             order (repeated or reordered characters)",
                            u32::from(prev)
                        )));
                    }
                }
                chars.push(c);
            }
        }
        Ok(CharVocab::from_sorted(chars))
    }
}
