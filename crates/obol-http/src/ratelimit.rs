//! Throttling: token buckets per credential (every request) and per client address (failed
//! authentications only), so a leaked key cannot flood the ledger and nobody can guess keys or
//! signatures at speed. Buckets are bounded in number; idle full buckets are dropped first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets kept per limiter.
const BUCKETS_MAX: usize = 100_000;

/// Most argon2id verifications (19 MiB each) running at once: memory for key checks stays
/// under 4 x 19 MiB however many requests arrive with unknown keys.
pub const ARGON2_CONCURRENT_MAX: usize = 4;

/// How long a request waits for an argon2id slot before it is answered `overloaded`.
pub const ARGON2_WAIT_MS: u64 = 5_000;

/// Least time between two sweeps of a full bucket map: a sweep walks every bucket under the
/// lock, so a flood of new addresses must not make every request pay for one.
const SWEEP_INTERVAL_MS: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token-bucket limiter keyed by `K`: `rate_per_s` tokens a second, at most `burst` saved up.
pub struct RateLimiter<K> {
    buckets: Mutex<Buckets<K>>,
    rate_per_s: f64,
    burst: f64,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    swept: Option<Instant>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter; a `rate_per_s` of 0 allows everything.
    pub fn new(rate_per_s: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter {
            buckets: Mutex::new(Buckets { map: HashMap::new(), swept: None }),
            rate_per_s,
            burst: burst.max(1.0),
        }
    }

    /// Gives back a token taken for `key` (a reservation that turned out not to count).
    pub fn give_back(&self, key: &K) {
        if self.rate_per_s <= 0.0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.map.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
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
        if buckets.map.len() >= BUCKETS_MAX && !buckets.map.contains_key(key) {
            // Drop the buckets that refilled (they hold no memory of anything), at most once a
            // second; if the map is still full, a new key is refused rather than let the map
            // grow: under a flood of new keys, failing closed is the safe side.
            let due = buckets
                .swept
                .is_none_or(|at| now.saturating_duration_since(at).as_millis() >= u128::from(SWEEP_INTERVAL_MS));
            if due {
                let burst = self.burst;
                let rate = self.rate_per_s;
                buckets
                    .map
                    .retain(|_, b| b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst);
                buckets.swept = Some(now);
            }
            if buckets.map.len() >= BUCKETS_MAX {
                return Err(1);
            }
        }
        let bucket = buckets.map.entry(key.clone()).or_insert(Bucket { tokens: self.burst, updated: now });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
        }
    }

    /// Seconds until `key` has a token again (`None`: it has one now), without taking one.
    pub fn wait_s(&self, key: &K) -> Option<u64> {
        if self.rate_per_s <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.map.get_mut(key)?;
        self.refill(bucket, now);
        (bucket.tokens < 1.0).then(|| ((1.0 - bucket.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
    }
}

/// An address range (`203.0.113.7` or `10.0.0.0/8`, IPv4 or IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix_bits: u8,
}

impl IpRange {
    /// Reads `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: std::net::IpAddr =
            address.parse().map_err(|_| format!("{text:?} is not an IP address or ADDRESS/PREFIX range"))?;
        let bits_max: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match prefix {
            None => bits_max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= bits_max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits_max}"))?,
        };
        Ok(IpRange { network, prefix_bits })
    }

    /// Whether `address` lies in the range.
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        let (network, address, bits_max) = match (self.network, address) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                (u128::from(n.to_bits()), u128::from(a.to_bits()), 32)
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => (n.to_bits(), a.to_bits(), 128),
            _ => return false,
        };
        let host_bits = bits_max - u32::from(self.prefix_bits);
        let mask = if host_bits >= 128 { 0 } else { (u128::MAX >> host_bits) << host_bits };
        let mask = if bits_max == 32 { mask & u128::from(u32::MAX) } else { mask };
        network & mask == address & mask
    }
}

/// The address a request came from: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy (what a proxy
/// appends cannot be forged by the client; what the client sent further left can).
pub fn client_address(peer: std::net::IpAddr, forwarded_for: Option<&str>, trusted: &[IpRange]) -> std::net::IpAddr {
    if !trusted.iter().any(|range| range.contains(peer)) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    for hop in header.rsplit(',') {
        let Ok(address) = hop.trim().parse::<std::net::IpAddr>() else { return peer };
        if !trusted.iter().any(|range| range.contains(address)) {
            return address;
        }
    }
    peer
}

/// The limits a server applies.
pub struct Limits {
    /// Requests per credential (API key id or device id).
    pub per_credential: RateLimiter<String>,
    /// Failed authentications per client address.
    pub failed_auth_per_ip: RateLimiter<std::net::IpAddr>,
    /// Slots for argon2id verifications ([`ARGON2_CONCURRENT_MAX`]).
    pub argon2: tokio::sync::Semaphore,
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
            argon2: tokio::sync::Semaphore::new(ARGON2_CONCURRENT_MAX),
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
        limiter.give_back(&"k");
        assert!(limiter.take(&"k").is_ok(), "a token given back is there again");
        let off: RateLimiter<&str> = RateLimiter::new(0.0, 0.0);
        for _ in 0..1000 {
            assert!(off.take(&"k").is_ok());
        }
    }

    #[test]
    fn r10_09_a_full_bucket_map_refuses_new_keys_instead_of_growing() {
        let limiter: RateLimiter<u32> = RateLimiter::new(0.001, 2.0);
        for key in 0..BUCKETS_MAX as u32 {
            assert!(limiter.take(&key).is_ok());
        }
        assert_eq!(limiter.take(&u32::MAX), Err(1), "no bucket refilled, so no room");
        assert_eq!(limiter.buckets.lock().unwrap().map.len(), BUCKETS_MAX);
        assert!(limiter.take(&0).is_ok(), "keys already there go on");
    }

    #[test]
    fn r10_09_behind_a_trusted_proxy_the_client_is_the_last_untrusted_hop() {
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap(), IpRange::parse("::1").unwrap()];
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let proxy = ip("10.1.2.3");
        assert_eq!(client_address(proxy, Some("198.51.100.7"), &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_address(proxy, Some("1.2.3.4, 198.51.100.7, 10.9.9.9"), &trusted),
            ip("198.51.100.7"),
            "what the client wrote further left is not believed"
        );
        assert_eq!(
            client_address(ip("203.0.113.5"), Some("198.51.100.7"), &trusted),
            ip("203.0.113.5"),
            "untrusted peers are not believed"
        );
        assert_eq!(client_address(proxy, None, &trusted), proxy);
        assert_eq!(client_address(proxy, Some("garbage"), &trusted), proxy);
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!IpRange::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(IpRange::parse("2001:db8::/32").unwrap().contains(ip("2001:db8::1")));
    }
}
