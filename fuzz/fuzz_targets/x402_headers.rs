//! Any header text: the x402 decoders answer an error or a value, never panic; what decodes
//! encodes to standard base64 that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_wire::x402::{PaymentPayload, PaymentRequired, SettlementResponse, decode_header, encode_header};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(payload) = decode_header::<PaymentPayload>(text) {
        let again: PaymentPayload = decode_header(&encode_header(&payload)).expect("re-encoded payload decodes");
        assert_eq!(serde_json::to_value(&again).ok(), serde_json::to_value(&payload).ok());
    }
    if let Ok(offer) = decode_header::<PaymentRequired>(text) {
        let again: PaymentRequired = decode_header(&encode_header(&offer)).expect("re-encoded offer decodes");
        assert_eq!(serde_json::to_value(&again).ok(), serde_json::to_value(&offer).ok());
    }
    if let Ok(receipt) = decode_header::<SettlementResponse>(text) {
        assert_eq!(decode_header::<SettlementResponse>(&encode_header(&receipt)), Ok(receipt));
    }
});
