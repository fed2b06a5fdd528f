//! Throttling: token buckets per credential (every request) and per client address (failed
//! authentications only), so a leaked key cannot flood the ledger and nobody can guess keys or
//! signatures at speed. Buckets are bounded in number; idle full buckets are dropped first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets kept per limiter.
const BUCKETS_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token-bucket limiter keyed by `K`: `rate_per_s` tokens a second, at most `burst` saved up.
pub struct RateLimiter<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
    rate_per_s: f64,
    burst: f64,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter; a `rate_per_s` of 0 allows everything.
    pub fn new(rate_per_s: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter { buckets: Mutex::new(HashMap::new()), rate_per_s, burst: burst.max(1.0) }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_s).min(self.burst);
        bucket.updated = now;
    }

    /// Takes one token for `key`; `Err(seconds)` says how long until one is available.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        if self.rate_per_s <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(key) {
            let burst = self.burst;
            let rate = self.rate_per_s;
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { tokens: self.burst, updated: now });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
        }
    }

    /// Whether `key` has a token left, without taking one.
    pub fn has_token(&self, key: &K) -> bool {
        if self.rate_per_s <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match buckets.get_mut(key) {
            None => true,
            Some(bucket) => {
                self.refill(bucket, now);
                bucket.tokens >= 1.0
            }
        }
    }
}

/// The limits a server applies.
pub struct Limits {
    /// Requests per credential (API key id or device id).
    pub per_credential: RateLimiter<String>,
    /// Failed authentications per client address.
    pub failed_auth_per_ip: RateLimiter<std::net::IpAddr>,
}

impl Limits {
    /// `per_credential_per_s` requests a second per credential (burst of two seconds' worth;
    /// 0 turns it off) and `failed_auth_burst` failed authentications per address, refilled one
    /// per 3 s (0 turns it off).
    pub fn new(per_credential_per_s: u32, failed_auth_burst: u32) -> Limits {
        let rate = f64::from(per_credential_per_s);
        let failures_per_s = if failed_auth_burst == 0 { 0.0 } else { 1.0 / 3.0 };
        Limits {
            per_credential: RateLimiter::new(rate, rate * 2.0),
            failed_auth_per_ip: RateLimiter::new(failures_per_s, f64::from(failed_auth_burst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limiter: RateLimiter<&str> = RateLimiter::new(1.0, 3.0);
        for _ in 0..3 {
            assert!(limiter.take(&"k").is_ok());
        }
        assert_eq!(limiter.take(&"k"), Err(1));
        assert!(limiter.take(&"other").is_ok(), "buckets are per key");
        let off: RateLimiter<&str> = RateLimiter::new(0.0, 0.0);
        for _ in 0..1000 {
            assert!(off.take(&"k").is_ok());
        }
    }
}
