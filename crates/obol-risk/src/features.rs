//! Streaming features: per payer, device, payee, network and pair, counts and sums over sliding
//! windows of 1 minute, 1 hour, 24 hours and 30 days, the amount against the payer's own history
//! (EWMA mean and deviation), first sightings (device, payee, network), and a cluster signal: how
//! many payers used a network for the first time in the last hour (many victims suddenly paying
//! through one new cell is the 2025 KT femtocell pattern).
//!
//! Every event costs O(1): each window is a sliding-window counter (the current fixed bucket plus
//! the previous one, weighted by how much of it is still inside the window), and a full store
//! evicts the least recently seen of eight sampled entities. Memory per entity is fixed
//! ([`ENTITY_BYTES`]); the store is bounded by its capacity; [`FeatureStore::snapshot`] and
//! [`FeatureStore::restore`] carry it across a restart exactly.

use foldhash::HashMap;
use foldhash::HashMapExt;

/// Window lengths, seconds: 1 minute, 1 hour, 24 hours, 30 days.
pub const WINDOWS_S: [u64; 4] = [60, 3_600, 86_400, 30 * 86_400];
/// Weight of a new amount in the payer's running mean and variance.
pub const EWMA_ALPHA: f64 = 0.1;
/// Entities a store holds by default (about 250 MB at most).
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// Entities sampled to choose one to evict.
const EVICTION_SAMPLE: usize = 8;

/// What an entity is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// A paying account.
    Payer = 1,
    /// A payer's device.
    Device = 2,
    /// A payee account.
    Payee = 3,
    /// A network identifier (an address block or a cell, as a keyed hash).
    Network = 4,
    /// A payer and payee together.
    Pair = 5,
    /// A payer and network together (its first sighting makes a network's new payer).
    PayerNetwork = 6,
    /// A network's payers seen there for the first time.
    NetworkNewPayers = 7,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Kind> {
        Some(match value {
            1 => Kind::Payer,
            2 => Kind::Device,
            3 => Kind::Payee,
            4 => Kind::Network,
            5 => Kind::Pair,
            6 => Kind::PayerNetwork,
            7 => Kind::NetworkNewPayers,
            _ => return None,
        })
    }
}

/// An entity's key: its kind and a 128-bit id (pairs combine two ids with [`pair_id`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    /// Kind.
    pub kind: Kind,
    /// Id.
    pub id: u128,
}

/// A 128-bit id for a pair of ids (order matters). A fixed mix, not a secret: collisions need
/// about 2^64 pairs.
pub fn pair_id(a: u128, b: u128) -> u128 {
    let mix = |x: u128| {
        let x = x ^ (x >> 67);
        let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        x ^ (x >> 61)
    };
    mix(a ^ mix(b).rotate_left(17))
}

/// One sliding-window counter.
#[derive(Clone, Copy, Default, PartialEq, Debug)]
struct Window {
    bucket: u32,
    count_now: u32,
    count_prev: u32,
    sum_now: u64,
    sum_prev: u64,
}

impl Window {
    fn roll(&mut self, bucket: u32) {
        if bucket <= self.bucket {
            return; // the same bucket, or an event a little out of order: count it as current
        }
        if bucket == self.bucket + 1 {
            self.count_prev = self.count_now;
            self.sum_prev = self.sum_now;
        } else {
            self.count_prev = 0;
            self.sum_prev = 0;
        }
        self.count_now = 0;
        self.sum_now = 0;
        self.bucket = bucket;
    }

    fn add(&mut self, at_s: u64, width_s: u64, amount: u64) {
        self.roll((at_s / width_s) as u32);
        self.count_now = self.count_now.saturating_add(1);
        self.sum_now = self.sum_now.saturating_add(amount);
    }

    /// (count, sum) in the window ending at `at_s`.
    fn estimate(&self, at_s: u64, width_s: u64) -> (f64, f64) {
        let bucket = (at_s / width_s) as u32;
        let left = (width_s - at_s % width_s) as f64 / width_s as f64;
        if bucket == self.bucket {
            (self.count_now as f64 + self.count_prev as f64 * left, self.sum_now as f64 + self.sum_prev as f64 * left)
        } else if bucket == self.bucket + 1 {
            (self.count_now as f64 * left, self.sum_now as f64 * left)
        } else {
            (0.0, 0.0)
        }
    }
}

/// What the store keeps per entity.
#[derive(Clone, Copy, Default, PartialEq, Debug)]
struct Stats {
    windows: [Window; WINDOWS_S.len()],
    first_seen_s: u64,
    last_seen_s: u64,
    mean: f64,
    variance: f64,
    events: u32,
}

impl Stats {
    fn add(&mut self, at_s: u64, amount: u64) {
        for (window, width) in self.windows.iter_mut().zip(WINDOWS_S) {
            window.add(at_s, width, amount);
        }
        self.last_seen_s = self.last_seen_s.max(at_s);
        self.events = self.events.saturating_add(1);
    }

    /// (count, sum) in window `W` (an index into [`WINDOWS_S`]) ending at `at_s`.
    #[expect(
        clippy::indexing_slicing,
        reason = "`W < WINDOWS_S.len()`, the length of `windows`, is asserted at compile time"
    )]
    fn window<const W: usize>(&self, at_s: u64) -> (f64, f64) {
        const { assert!(W < WINDOWS_S.len()) };
        self.windows[W].estimate(at_s, WINDOWS_S[W])
    }
}

/// Bytes one entity takes in the store: its key and state in a vector slot, plus its index entry.
pub const ENTITY_BYTES: usize = std::mem::size_of::<(Key, Stats)>() + std::mem::size_of::<(Key, u32)>() + 1;

/// A money-moving event, as the risk engine sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Event {
    /// When, seconds since the Unix epoch (the ledger's time).
    pub at_s: u64,
    /// The paying account.
    pub payer: u128,
    /// The device that signed, if one did.
    pub device: Option<u128>,
    /// The payee account.
    pub payee: u128,
    /// The network it came from (a keyed hash of the address block or cell), if known.
    pub network: Option<u64>,
    /// The amount in whole ISO 4217 minor units of its currency (cents for USD or EUR at any
    /// scale, won for KRW), not the paying account's units: features count these, so one model
    /// serves every scale.
    pub amount_iso_minor: u128,
    /// Failed authentications of the payer's principal recently (from its lockout state).
    pub failed_auth_count: u32,
    /// Whether the payee sells cash-like goods (gift cards, vouchers, top-ups).
    pub payee_cash_like: bool,
}

/// The features of one event, each a number; [`FEATURE_NAMES`] names them in order.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct Features(pub [f64; FEATURES_COUNT]);

/// How many features an event has.
pub const FEATURES_COUNT: usize = 24;

/// Feature names, in the order of [`Features`].
pub const FEATURE_NAMES: [&str; FEATURES_COUNT] = [
    "payer_count_1m",
    "payer_count_1h",
    "payer_count_24h",
    "payer_count_30d",
    "payer_sum_1h",
    "payer_sum_24h",
    "payer_sum_30d",
    "device_count_1m",
    "device_count_1h",
    "payee_count_1m",
    "payee_count_1h",
    "network_count_1h",
    "pair_count_24h",
    "amount",
    "amount_z",
    "amount_over_mean",
    "device_new",
    "payee_new_for_payer",
    "network_new_for_payer",
    "payer_age_days",
    "hour_of_day",
    "failed_auth_count",
    "payee_cash_like",
    "network_new_payers_1h",
];

impl Features {
    /// A feature by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        FEATURE_NAMES.iter().zip(self.0).find_map(|(n, value)| (*n == name).then_some(value))
    }
}

/// Per-entity state, bounded; O(1) per event.
#[derive(Clone, Debug)]
pub struct FeatureStore {
    entities: Vec<(Key, Stats)>,
    index: HashMap<Key, u32>,
    capacity: usize,
    cursor: u64,
    evicted: u64,
}

impl Default for FeatureStore {
    fn default() -> FeatureStore {
        FeatureStore::with_capacity(DEFAULT_CAPACITY)
    }
}

/// Why a snapshot was not restored.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot of this version.
    #[error("not a feature snapshot (magic or version)")]
    Magic,
    /// Cut short or with bytes left over.
    #[error("the snapshot's length is wrong")]
    Length,
    /// An entity kind no version wrote.
    #[error("unknown entity kind {0}")]
    Kind(u8),
}

const SNAPSHOT_MAGIC: [u8; 4] = *b"ORF1";
const STATS_BYTES: usize = 4 * (4 + 4 + 4 + 8 + 8) + 8 + 8 + 8 + 8 + 4;
const RECORD_BYTES: usize = 1 + 16 + STATS_BYTES;

impl FeatureStore {
    /// A store holding at most `capacity` entities (at least 16).
    pub fn with_capacity(capacity: usize) -> FeatureStore {
        FeatureStore { entities: Vec::new(), index: HashMap::new(), capacity: capacity.max(16), cursor: 0, evicted: 0 }
    }

    /// Entities held.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Entities evicted so far to stay within capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    #[cfg(test)]
    fn get(&self, key: Key) -> Option<&Stats> {
        let index = *self.index.get(&key)?;
        self.entities.get(index as usize).map(|(_, stats)| stats)
    }

    /// The entity's state, created (evicting one if full) when new; and whether it was new.
    #[expect(
        clippy::indexing_slicing,
        reason = "`index` holds only positions in `entities` (kept in step by push, evict and restore), and the \
                  second index is the slot just pushed"
    )]
    fn entry(&mut self, key: Key) -> (&mut Stats, bool) {
        if let Some(index) = self.index.get(&key).copied() {
            return (&mut self.entities[index as usize].1, false);
        }
        if self.entities.len() >= self.capacity {
            self.evict_one();
        }
        let index = self.entities.len() as u32;
        self.entities.push((key, Stats::default()));
        self.index.insert(key, index);
        (&mut self.entities[index as usize].1, true)
    }

    /// Evicts the least recently seen of a few entities sampled at a moving cursor.
    fn evict_one(&mut self) {
        let len = self.entities.len() as u64;
        let last_seen = |index: usize| self.entities.get(index).map_or(u64::MAX, |(_, stats)| stats.last_seen_s);
        let mut victim = (self.cursor % len) as usize;
        let mut victim_seen = last_seen(victim);
        for step in 0..EVICTION_SAMPLE as u64 {
            // A large odd stride visits every slot over time, deterministically.
            let index = (self.cursor.wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % len) as usize;
            let seen = last_seen(index);
            if seen < victim_seen {
                (victim, victim_seen) = (index, seen);
            }
        }
        self.cursor = self.cursor.wrapping_add(0x9E37_79B9);
        let (key, _) = self.entities.swap_remove(victim);
        self.index.remove(&key);
        if let Some((moved, _)) = self.entities.get(victim) {
            self.index.insert(*moved, victim as u32);
        }
        self.evicted += 1;
    }

    /// Observes `event` and answers its features (the counts include the event itself).
    pub fn observe(&mut self, event: &Event) -> Features {
        features_of(self, event)
    }

    /// The features `event` would have if observed now, changing nothing (a dry run: the
    /// facilitator's `verify` decides as `settle` would, without counting the payment).
    pub fn peek(&self, event: &Event) -> Features {
        features_of(&mut Scratch { store: self, copies: Vec::with_capacity(8) }, event)
    }

    /// The store's state as bytes (entities in their order), for [`FeatureStore::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * 4 + self.entities.len() * RECORD_BYTES);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.capacity as u64).to_le_bytes());
        out.extend_from_slice(&self.cursor.to_le_bytes());
        out.extend_from_slice(&self.evicted.to_le_bytes());
        out.extend_from_slice(&(self.entities.len() as u64).to_le_bytes());
        for (key, stats) in &self.entities {
            out.push(key.kind as u8);
            out.extend_from_slice(&key.id.to_le_bytes());
            for window in &stats.windows {
                out.extend_from_slice(&window.bucket.to_le_bytes());
                out.extend_from_slice(&window.count_now.to_le_bytes());
                out.extend_from_slice(&window.count_prev.to_le_bytes());
                out.extend_from_slice(&window.sum_now.to_le_bytes());
                out.extend_from_slice(&window.sum_prev.to_le_bytes());
            }
            out.extend_from_slice(&stats.first_seen_s.to_le_bytes());
            out.extend_from_slice(&stats.last_seen_s.to_le_bytes());
            out.extend_from_slice(&stats.mean.to_bits().to_le_bytes());
            out.extend_from_slice(&stats.variance.to_bits().to_le_bytes());
            out.extend_from_slice(&stats.events.to_le_bytes());
        }
        out
    }

    /// Rebuilds a store from [`FeatureStore::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<FeatureStore, SnapshotError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Magic);
        }
        let capacity = reader.u64()? as usize;
        let cursor = reader.u64()?;
        let evicted = reader.u64()?;
        let count = reader.u64()? as usize;
        if bytes.len() != reader.at + count.saturating_mul(RECORD_BYTES) {
            return Err(SnapshotError::Length);
        }
        let mut store = FeatureStore::with_capacity(capacity);
        store.cursor = cursor;
        store.evicted = evicted;
        store.entities.reserve(count);
        for index in 0..count {
            let [kind_byte] = reader.array()?;
            let kind = Kind::from_u8(kind_byte).ok_or(SnapshotError::Kind(kind_byte))?;
            let id = u128::from_le_bytes(reader.array()?);
            let mut stats = Stats::default();
            for window in &mut stats.windows {
                window.bucket = reader.u32()?;
                window.count_now = reader.u32()?;
                window.count_prev = reader.u32()?;
                window.sum_now = reader.u64()?;
                window.sum_prev = reader.u64()?;
            }
            stats.first_seen_s = reader.u64()?;
            stats.last_seen_s = reader.u64()?;
            stats.mean = f64::from_bits(reader.u64()?);
            stats.variance = f64::from_bits(reader.u64()?);
            stats.events = reader.u32()?;
            let key = Key { kind, id };
            store.entities.push((key, stats));
            store.index.insert(key, index as u32);
        }
        Ok(store)
    }
}

/// Entity state as [`features_of`] reads and updates it.
trait Entities {
    /// The entity's state (created when new), and whether it was new.
    fn entry(&mut self, key: Key) -> (&mut Stats, bool);
}

impl Entities for FeatureStore {
    fn entry(&mut self, key: Key) -> (&mut Stats, bool) {
        FeatureStore::entry(self, key)
    }
}

/// Copies of a store's entities, updated in place of the store's (for [`FeatureStore::peek`]).
struct Scratch<'a> {
    store: &'a FeatureStore,
    copies: Vec<(Key, Stats, bool)>,
}

impl Entities for Scratch<'_> {
    #[expect(clippy::indexing_slicing, reason = "`at` is a position found in `copies`, or the slot just pushed")]
    fn entry(&mut self, key: Key) -> (&mut Stats, bool) {
        let at = match self.copies.iter().position(|(k, _, _)| *k == key) {
            Some(at) => at,
            None => {
                let found = self.store.index.get(&key).and_then(|&index| self.store.entities.get(index as usize));
                let found = found.map(|&(_, stats)| stats);
                self.copies.push((key, found.unwrap_or_default(), found.is_none()));
                self.copies.len() - 1
            }
        };
        let (_, stats, new) = &mut self.copies[at];
        (stats, *new)
    }
}

/// An event's features, counting the event itself, from the entity state `entities` gives (and
/// updates).
fn features_of(entities: &mut impl Entities, event: &Event) -> Features {
    let at = event.at_s;
    let amount = u64::try_from(event.amount_iso_minor).unwrap_or(u64::MAX);
    let mut out = [0.0; FEATURES_COUNT];

    // The payer: windows, and the amount against its own history before this event.
    let (payer, payer_new) = entities.entry(Key { kind: Kind::Payer, id: event.payer });
    if payer_new {
        payer.first_seen_s = at;
    }
    let (mean, deviation) = (payer.mean, payer.variance.sqrt());
    let history = payer.events;
    payer.add(at, amount);
    let amount_f = amount as f64;
    if history == 0 {
        payer.mean = amount_f;
    } else {
        let delta = amount_f - payer.mean;
        payer.mean += EWMA_ALPHA * delta;
        payer.variance = (1.0 - EWMA_ALPHA) * (payer.variance + EWMA_ALPHA * delta * delta);
    }
    let payer = *payer;
    out[0] = payer.window::<0>(at).0;
    out[1] = payer.window::<1>(at).0;
    out[2] = payer.window::<2>(at).0;
    out[3] = payer.window::<3>(at).0;
    out[4] = payer.window::<1>(at).1;
    out[5] = payer.window::<2>(at).1;
    out[6] = payer.window::<3>(at).1;
    out[13] = amount_f;
    if history >= 3 {
        out[14] = (amount_f - mean) / deviation.max(1.0);
        out[15] = amount_f / mean.max(1.0);
    }
    out[19] = at.saturating_sub(payer.first_seen_s) as f64 / 86_400.0;

    if let Some(device) = event.device {
        let (stats, new) = entities.entry(Key { kind: Kind::Device, id: device });
        stats.add(at, amount);
        out[7] = stats.window::<0>(at).0;
        out[8] = stats.window::<1>(at).0;
        out[16] = f64::from(u8::from(new));
    }
    let (payee, _) = entities.entry(Key { kind: Kind::Payee, id: event.payee });
    payee.add(at, amount);
    out[9] = payee.window::<0>(at).0;
    out[10] = payee.window::<1>(at).0;
    let (pair, pair_new) = entities.entry(Key { kind: Kind::Pair, id: pair_id(event.payer, event.payee) });
    pair.add(at, amount);
    out[12] = pair.window::<2>(at).0;
    out[17] = f64::from(u8::from(pair_new));
    if let Some(network) = event.network {
        let network = u128::from(network);
        let (stats, _) = entities.entry(Key { kind: Kind::Network, id: network });
        stats.add(at, amount);
        out[11] = stats.window::<1>(at).0;
        let (seen, first) = entities.entry(Key { kind: Kind::PayerNetwork, id: pair_id(event.payer, network) });
        seen.add(at, amount);
        out[18] = f64::from(u8::from(first));
        let (newcomers, _) = entities.entry(Key { kind: Kind::NetworkNewPayers, id: network });
        if first {
            newcomers.add(at, 0);
        }
        out[23] = newcomers.window::<1>(at).0;
    }
    out[20] = ((at % 86_400) / 3_600) as f64;
    out[21] = f64::from(event.failed_auth_count);
    out[22] = f64::from(u8::from(event.payee_cash_like));
    Features(out)
}

/// Reads a snapshot's bytes in order; every read past the end is [`SnapshotError::Length`].
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    /// Bytes read so far.
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError::Length)?;
        let slice = self.bytes.get(self.at..end).ok_or(SnapshotError::Length)?;
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_790_000_000 - 1_790_000_000 % 86_400; // a UTC midnight

    fn pay(at_s: u64, payer: u128, payee: u128, amount_iso_minor: u128) -> Event {
        Event { at_s, payer, payee, amount_iso_minor, device: Some(payer * 10), network: Some(7), ..Event::default() }
    }

    fn feature(features: &Features, name: &str) -> f64 {
        features.get(name).unwrap_or_else(|| panic!("no feature {name}"))
    }

    #[test]
    fn peek_answers_what_observe_would_and_changes_nothing() {
        let mut store = FeatureStore::default();
        for (i, amount) in [300u128, 500, 200, 900, 400].into_iter().enumerate() {
            store.observe(&pay(T0 + 10 * i as u64, 1, 2, amount));
        }
        // A known payer and pair, a new payee, a new network, a new device.
        let events = [
            pay(T0 + 60, 1, 2, 700),
            pay(T0 + 61, 1, 3, 50),
            Event { network: Some(8), device: Some(99), ..pay(T0 + 62, 1, 2, 5) },
            pay(T0 + 90_000, 4, 2, 1),
        ];
        for event in events {
            let before = store.snapshot();
            let peeked = store.peek(&event);
            assert_eq!(store.snapshot(), before, "peek changed the store");
            let observed = store.observe(&event);
            assert_eq!(peeked.0, observed.0, "{event:?}");
        }
    }

    #[test]
    fn windows_count_what_falls_inside_them() {
        let mut store = FeatureStore::default();
        for n in 0..5 {
            store.observe(&pay(T0 + n, 1, 2, 100));
        }
        let f = store.observe(&pay(T0 + 5, 1, 2, 100));
        assert_eq!(feature(&f, "payer_count_1m"), 6.0);
        assert_eq!(feature(&f, "payer_sum_1h"), 600.0);
        // Half a window later, the old bucket counts for half (the sliding estimate).
        let f = store.observe(&pay(T0 + 90, 1, 2, 100));
        assert_eq!(feature(&f, "payer_count_1m"), 1.0 + 6.0 * 0.5);
        assert_eq!(feature(&f, "payer_count_1h"), 7.0);
        // Two windows later nothing of the minute is left; the day still counts everything.
        let f = store.observe(&pay(T0 + 200, 1, 2, 100));
        assert_eq!(feature(&f, "payer_count_1m"), 1.0);
        assert_eq!(feature(&f, "payer_count_24h"), 8.0);
        assert_eq!(feature(&f, "pair_count_24h"), 8.0);
    }

    #[test]
    fn first_sightings_and_the_amount_against_the_payers_history() {
        let mut store = FeatureStore::default();
        let first = store.observe(&pay(T0 + 3 * 3_600, 1, 2, 100));
        assert_eq!(
            (
                feature(&first, "device_new"),
                feature(&first, "payee_new_for_payer"),
                feature(&first, "network_new_for_payer")
            ),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(feature(&first, "hour_of_day"), 3.0);
        for n in 1..20 {
            store.observe(&pay(T0 + 3 * 3_600 + n * 60, 1, 2, 100 + (n as u128 % 3)));
        }
        let usual = store.observe(&pay(T0 + 5 * 3_600, 1, 2, 101));
        assert_eq!(feature(&usual, "device_new"), 0.0);
        assert!(feature(&usual, "amount_z").abs() < 3.0, "{usual:?}");
        let odd = store.observe(&pay(T0 + 5 * 3_600 + 1, 1, 3, 50_000));
        assert!(feature(&odd, "amount_z") > 50.0, "{odd:?}");
        assert!(feature(&odd, "amount_over_mean") > 100.0);
        assert_eq!(feature(&odd, "payee_new_for_payer"), 1.0);
    }

    #[test]
    fn many_new_payers_through_one_network_raise_the_cluster_signal() {
        let mut store = FeatureStore::default();
        // A quiet cell: the same payer for an hour.
        for n in 0..30 {
            let f = store.observe(&pay(T0 + n * 60, 1, 2, 100));
            assert!(feature(&f, "network_new_payers_1h") <= 1.0);
        }
        // A new cell where fifty different victims pay within ten minutes.
        let mut last = Features::default();
        for victim in 0..50u128 {
            let mut event = pay(T0 + 4_000 + victim as u64 * 12, 100 + victim, 9, 99_000);
            event.network = Some(666);
            last = store.observe(&event);
        }
        assert_eq!(feature(&last, "network_new_payers_1h"), 50.0);
    }

    #[test]
    fn the_store_stays_within_capacity_and_evicts_the_idle() {
        let mut store = FeatureStore::with_capacity(1_000);
        for n in 0..5_000u64 {
            store.observe(&Event {
                at_s: T0 + n,
                payer: u128::from(n),
                payee: 1,
                amount_iso_minor: 5,
                ..Event::default()
            });
            assert!(store.len() <= 1_000);
        }
        assert!(store.evicted() >= 4_000);
        // The busiest payee, seen at every event, survives every eviction.
        assert!(store.get(Key { kind: Kind::Payee, id: 1 }).is_some_and(|s| s.events == 5_000));
        // 208 bytes in the vector slot, 48 in the index: documented in ARCHITECTURE.md.
        assert_eq!(ENTITY_BYTES, 257, "an entity takes {ENTITY_BYTES} bytes");
    }

    #[test]
    fn a_snapshot_restores_the_same_store_and_the_same_features() {
        let mut store = FeatureStore::with_capacity(64);
        for n in 0..300u64 {
            store.observe(&pay(T0 + n * 37, u128::from(n % 40), u128::from(n % 7), u128::from(n * 13 % 1_000)));
        }
        let bytes = store.snapshot();
        let mut restored = FeatureStore::restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes);
        let next = pay(T0 + 20_000, 3, 4, 777);
        assert_eq!(restored.observe(&next), store.observe(&next), "a restart changes no feature");
        assert_eq!(FeatureStore::restore(&bytes[..bytes.len() - 1]).unwrap_err(), SnapshotError::Length);
        assert_eq!(FeatureStore::restore(b"nope").unwrap_err(), SnapshotError::Magic);
    }
}
