//! Any bytes: the record codec refuses or decodes, never panics, and what decodes re-encodes to a
//! record that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_core::record::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let bytes = record.encode().expect("what decodes fits its length prefixes, so it encodes");
        assert_eq!(Record::decode(&bytes), Ok(record));
    }
});
