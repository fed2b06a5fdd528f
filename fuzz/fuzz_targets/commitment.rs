//! Any bytes: a PayWord commitment decodes only from its 184-byte version 2 form or its 152-byte
//! version 1 form (old logs), and round-trips byte for byte; and a
//! tab that accepted a chain's commitment never pays beyond its escrow, whatever words arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_core::channel::{COMMITMENT_BYTES, COMMITMENT_BYTES_V1, Commitment, Network, Tab};

fuzz_target!(|data: &[u8]| {
    if let Ok(commitment) = Commitment::decode(data) {
        let expected = if commitment.network == Network::UNBOUND { COMMITMENT_BYTES_V1 } else { COMMITMENT_BYTES };
        assert_eq!(data.len(), expected);
        let encoded = commitment.encode();
        assert_eq!(&encoded[..], data);
        assert_eq!(Commitment::decode(&encoded), Ok(commitment));
    }
    // Ticks from arbitrary bytes (index, word) against a committed tab: refused or within escrow.
    if data.len() >= 36 {
        let mut tab = Tab {
            id: 1,
            payee_id: 2,
            escrow: 1_000,
            cumulative: 0,
            escrow_transfer_id: 1,
            device_id: 1,
            expires_ns: u64::MAX,
            seq: 0,
            payword: Some(Box::new(obol_core::channel::PaywordState {
                root: [7u8; 32],
                length: 100,
                value_per_tick: 10,
                last_index: 0,
                last_word: [7u8; 32],
            })),
            closed: false,
        };
        for chunk in data.chunks_exact(36) {
            let index = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let mut word = [0u8; 32];
            word.copy_from_slice(&chunk[4..]);
            let before = tab.clone();
            match tab.accept_tick(index, &word, 0) {
                Ok(added) => assert_eq!(tab.cumulative, before.cumulative + added),
                Err(_) => assert_eq!(tab, before, "a refused tick changes nothing"),
            }
            assert!(tab.cumulative <= tab.escrow);
        }
    }
});
