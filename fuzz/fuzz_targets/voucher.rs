//! Any bytes: a voucher decodes only from exactly its 124-byte form, and what decodes encodes
//! back to the same bytes (and decodes again to the same voucher).
#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_core::channel::{VOUCHER_BYTES, Voucher};

fuzz_target!(|data: &[u8]| {
    match Voucher::decode(data) {
        Ok(voucher) => {
            assert_eq!(data.len(), VOUCHER_BYTES);
            let encoded = voucher.encode();
            assert_eq!(&encoded[..], data, "encode(decode(bytes)) == bytes");
            assert_eq!(Voucher::decode(&encoded), Ok(voucher));
        }
        Err(_) => assert!(data.len() != VOUCHER_BYTES || data[..4] != obol_core::channel::VOUCHER_MAGIC),
    }
});
