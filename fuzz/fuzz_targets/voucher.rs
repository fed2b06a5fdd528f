//! Any bytes: a voucher decodes only from exactly its 124-byte version 2 form, and what decodes
//! encodes back to the same bytes (and decodes again to the same voucher). The log's reader also
//! takes version 1, which reads as the same voucher under the version 2 magic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_core::channel::{VOUCHER_BYTES, VOUCHER_MAGIC, Voucher};

fuzz_target!(|data: &[u8]| {
    match Voucher::decode(data) {
        Ok(voucher) => {
            assert_eq!(data.len(), VOUCHER_BYTES);
            let encoded = voucher.encode();
            assert_eq!(&encoded[..], data, "encode(decode(bytes)) == bytes");
            assert_eq!(Voucher::decode(&encoded), Ok(voucher));
        }
        Err(_) => assert!(data.len() != VOUCHER_BYTES || data[..4] != VOUCHER_MAGIC),
    }
    if let Ok(logged) = Voucher::decode_logged(data) {
        let encoded = logged.encode();
        assert_eq!(&encoded[..4], &VOUCHER_MAGIC);
        assert_eq!(&encoded[4..], &data[4..], "only the magic may differ");
    }
});
