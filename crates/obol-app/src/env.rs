//! Where the use cases read the time and draw random bytes. A server runs on [`SystemEnv`] (the
//! wall clock and the operating system's randomness); the simulator hands in a clock and a
//! generator of its own, so that a run follows from its seed. Nothing in this crate reads the
//! clock or draws randomness except through an [`Env`] it was given.

/// The time and randomness a use case may use.
pub trait Env: Send + Sync {
    /// Nanoseconds since the Unix epoch (key expiry, challenge lifetimes, TOTP steps).
    fn now_ns(&self) -> u64;

    /// Fills `bytes` with random bytes (secrets, nonces, ids). A server's must be unpredictable.
    fn fill(&self, bytes: &mut [u8]);

    /// Seconds since the Unix epoch.
    fn now_s(&self) -> u64 {
        self.now_ns() / 1_000_000_000
    }

    /// A fresh id for something the server creates itself (a tab's escrow, a settlement, a
    /// key): 126 random bits, never the reserved 0 or 1.
    fn random_id(&self) -> u128 {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        (u128::from_le_bytes(bytes) >> 2).max(2)
    }
}

/// The wall clock and the operating system's randomness.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ns(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    }

    fn fill(&self, bytes: &mut [u8]) {
        rand::fill(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Env for Fixed {
        fn now_ns(&self) -> u64 {
            3_500_000_000
        }

        fn fill(&self, bytes: &mut [u8]) {
            bytes.fill(0);
        }
    }

    #[test]
    fn ids_skip_the_reserved_values_and_seconds_round_down() {
        assert_eq!(Fixed.random_id(), 2, "an all-zero draw still gives a usable id");
        assert_eq!(Fixed.now_s(), 3);
        assert!(SystemEnv.random_id() >= 2);
        assert!(SystemEnv.now_ns() > 1_700_000_000_000_000_000, "the wall clock is past 2023");
    }
}
