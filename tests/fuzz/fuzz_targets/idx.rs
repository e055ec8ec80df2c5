//! Fuzzes the IDX parser (plain and gzip input): it must return `Ok` or `Err`, never panic,
//! and what it accepts must be consistent and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recurrent::data::idx::{encode_idx, parse_idx};

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = parse_idx(data) {
        assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
        let encoded = encode_idx(&array).expect("a parsed array encodes");
        let again = parse_idx(&encoded).expect("an encoded array parses");
        assert_eq!((again.dims, again.data), (array.dims, array.data));
        // Plain input round-trips byte for byte.
        if !data.starts_with(&[0x1f, 0x8b]) {
            assert_eq!(encoded, data);
        }
    }
});
