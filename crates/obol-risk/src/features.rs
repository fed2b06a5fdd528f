//! Streaming features: per payer, device, payee, network and pair, counts and sums over sliding
//! windows of 1 minute, 1 hour, and 1, 7 and 30 days, the amount against the payer's own history
//! (EWMA mean and deviation, and the means of its 7- and 30-day windows), first sightings
//! (device, payee, network), and a cluster signal: how many payers used a network for the first
//! time in the last hour (many victims suddenly paying through one new cell is the 2025 KT
//! femtocell pattern).
//!
//! Feedback: confirmed fraud ([`Label`]) enters the state of the payment's payee, device, network
//! and payer at the time the label became known, never earlier, and gives each of them fraud
//! counts and rates over 1, 7 and 30 days. A decision at time `t` therefore sees only the labels
//! known by `t`; [`Replay`] feeds a labelled history through the same code in time order, so the
//! features a model trains on are the ones the server computes live.
//!
//! Every event costs O(1): each window is a sliding-window counter (the current fixed bucket plus
//! the previous one, weighted by how much of it is still inside the window), and a full store
//! evicts the least recently seen of eight sampled entities. Memory per entity is fixed
//! ([`ENTITY_BYTES`]); the store is bounded by its capacity; [`FeatureStore::snapshot`] and
//! [`FeatureStore::restore`] carry it across a restart exactly.

use foldhash::HashMap;
use foldhash::HashMapExt;

/// Window lengths, seconds: 1 minute, 1 hour, 1 day, 7 days, 30 days.
pub const WINDOWS_S: [u64; 5] = [60, 3_600, 86_400, 7 * 86_400, 30 * 86_400];
/// Window lengths of the confirmed-fraud counts, seconds: 1, 7 and 30 days (by the time each
/// label became known).
pub const LABEL_WINDOWS_S: [u64; 3] = [86_400, 7 * 86_400, 30 * 86_400];
/// Which features an engine computes: a model records it and is refused by an engine that
/// computes another set (bumped whenever [`FEATURE_NAMES`] or the meaning of one changes).
pub const FEATURES_VERSION: u32 = 2;
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

/// One sliding-window count without a sum (confirmed fraud).
#[derive(Clone, Copy, Default, PartialEq, Debug)]
struct Tally {
    bucket: u32,
    count_now: u32,
    count_prev: u32,
}

impl Tally {
    fn add(&mut self, at_s: u64, width_s: u64) {
        let bucket = (at_s / width_s) as u32;
        if bucket > self.bucket {
            self.count_prev = if bucket == self.bucket + 1 { self.count_now } else { 0 };
            self.count_now = 0;
            self.bucket = bucket;
        }
        self.count_now = self.count_now.saturating_add(1);
    }

    fn estimate(&self, at_s: u64, width_s: u64) -> f64 {
        let window =
            Window { bucket: self.bucket, count_now: self.count_now, count_prev: self.count_prev, ..Window::default() };
        window.estimate(at_s, width_s).0
    }
}

/// What the store keeps per entity.
#[derive(Clone, Copy, Default, PartialEq, Debug)]
struct Stats {
    windows: [Window; WINDOWS_S.len()],
    frauds: [Tally; LABEL_WINDOWS_S.len()],
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

    /// Counts one confirmed fraud that became known at `known_at_s`.
    fn add_fraud(&mut self, known_at_s: u64) {
        for (tally, width) in self.frauds.iter_mut().zip(LABEL_WINDOWS_S) {
            tally.add(known_at_s, width);
        }
        self.last_seen_s = self.last_seen_s.max(known_at_s);
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

    /// The mean amount in window `W` (0 when it is empty).
    fn mean_in<const W: usize>(&self, at_s: u64) -> f64 {
        let (count, sum) = self.window::<W>(at_s);
        if count > 0.0 { sum / count } else { 0.0 }
    }

    /// Confirmed fraud known in the last 1, 7 and 30 days, then each as a share of the
    /// entity's payments in the same window (at most 1).
    fn feedback(&self, at_s: u64) -> [f64; 6] {
        let mut out = [0.0; 6];
        let counts = [self.window::<2>(at_s).0, self.window::<3>(at_s).0, self.window::<4>(at_s).0];
        for (((tally, width), count), (fraud_slot, rate_slot)) in
            self.frauds.iter().zip(LABEL_WINDOWS_S).zip(counts).zip([(0usize, 3usize), (1, 4), (2, 5)])
        {
            let frauds = tally.estimate(at_s, width);
            if let Some(slot) = out.get_mut(fraud_slot) {
                *slot = frauds;
            }
            if let Some(slot) = out.get_mut(rate_slot) {
                *slot = if count > 0.0 { (frauds / count).min(1.0) } else { f64::from(u8::from(frauds > 0.0)) };
            }
        }
        out
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

/// A confirmed fraud, as the feature store counts it: the labelled payment's parties and when the
/// label became known (an analyst's decline, a dispute resolved as unauthorised, an operator's
/// mark, an imported label file).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Label {
    /// When the label became known, seconds since the Unix epoch: it counts from then on.
    pub known_at_s: u64,
    /// The paying account.
    pub payer: u128,
    /// The device that signed, if one did.
    pub device: Option<u128>,
    /// The payee account.
    pub payee: u128,
    /// The network the payment came from, if known.
    pub network: Option<u64>,
}

impl Label {
    /// The label of `event`'s payment, known at `known_at_s`.
    pub fn of(event: &Event, known_at_s: u64) -> Label {
        Label { known_at_s, payer: event.payer, device: event.device, payee: event.payee, network: event.network }
    }
}

/// The features of one event, each a number; [`FEATURE_NAMES`] names them in order.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Features(pub [f64; FEATURES_COUNT]);

impl Default for Features {
    fn default() -> Features {
        Features([0.0; FEATURES_COUNT])
    }
}

/// How many features an event has.
pub const FEATURES_COUNT: usize = 60;

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
    "payer_count_7d",
    "payer_mean_1d",
    "payer_mean_7d",
    "payer_mean_30d",
    "amount_over_payer_mean_7d",
    "amount_over_payer_mean_30d",
    "payee_count_1d",
    "payee_count_7d",
    "payee_count_30d",
    "payee_mean_1d",
    "payee_mean_7d",
    "payee_mean_30d",
    "payee_fraud_1d",
    "payee_fraud_7d",
    "payee_fraud_30d",
    "payee_fraud_rate_1d",
    "payee_fraud_rate_7d",
    "payee_fraud_rate_30d",
    "device_fraud_1d",
    "device_fraud_7d",
    "device_fraud_30d",
    "device_fraud_rate_1d",
    "device_fraud_rate_7d",
    "device_fraud_rate_30d",
    "network_fraud_1d",
    "network_fraud_7d",
    "network_fraud_30d",
    "network_fraud_rate_1d",
    "network_fraud_rate_7d",
    "network_fraud_rate_30d",
    "payer_fraud_1d",
    "payer_fraud_7d",
    "payer_fraud_30d",
    "payer_fraud_rate_1d",
    "payer_fraud_rate_7d",
    "payer_fraud_rate_30d",
];

/// Where each entity's six feedback features start in [`FEATURE_NAMES`].
const PAYEE_FEEDBACK_AT: usize = 36;
const DEVICE_FEEDBACK_AT: usize = 42;
const NETWORK_FEEDBACK_AT: usize = 48;
const PAYER_FEEDBACK_AT: usize = 54;
const _: () = assert!(PAYER_FEEDBACK_AT + 6 == FEATURES_COUNT);

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

const SNAPSHOT_MAGIC: [u8; 4] = *b"ORF2";
const WINDOW_BYTES: usize = 4 + 4 + 4 + 8 + 8;
const STATS_BYTES: usize = WINDOWS_S.len() * WINDOW_BYTES + LABEL_WINDOWS_S.len() * 12 + 8 + 8 + 8 + 8 + 4;
const RECORD_BYTES: usize = 1 + 16 + STATS_BYTES;
/// Snapshots of the first feature set: four windows (no 7-day one) and no fraud counts. They
/// restore into the current layout with those left empty.
const SNAPSHOT_MAGIC_V1: [u8; 4] = *b"ORF1";
const STATS_BYTES_V1: usize = 4 * WINDOW_BYTES + 8 + 8 + 8 + 8 + 4;
const RECORD_BYTES_V1: usize = 1 + 16 + STATS_BYTES_V1;
/// Where the first layout's four windows go in the current one (1 minute, 1 hour, 1 day, 30 days).
const WINDOWS_OF_V1: [usize; 4] = [0, 1, 2, 4];

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

    /// Counts a confirmed fraud on the labelled payment's payer, device, payee and network, from
    /// the time the label became known. Entities not seen before are created (a declined
    /// payment's new device is then known as fraud when it pays again).
    pub fn label(&mut self, label: &Label) {
        let keys = [
            Some(Key { kind: Kind::Payer, id: label.payer }),
            label.device.map(|id| Key { kind: Kind::Device, id }),
            Some(Key { kind: Kind::Payee, id: label.payee }),
            label.network.map(|id| Key { kind: Kind::Network, id: u128::from(id) }),
        ];
        for key in keys.into_iter().flatten() {
            self.entry(key).0.add_fraud(label.known_at_s);
        }
    }

    /// Observes `event` and answers its features (the counts include the event itself).
    pub fn observe(&mut self, event: &Event) -> Features {
        let (features, update) = self.prepare(event);
        self.commit(update);
        features
    }

    /// The features `event` would have if observed now, changing nothing (a dry run: the
    /// facilitator's `verify` decides as `settle` would, without counting the payment).
    pub fn peek(&self, event: &Event) -> Features {
        self.prepare(event).0
    }

    /// The features `event` would have, and what observing it changes, changing nothing yet:
    /// [`FeatureStore::commit`] the update to count the event (the one computation serves a
    /// decision and, if the payment goes through, its counting).
    pub fn prepare(&self, event: &Event) -> (Features, Update) {
        let mut scratch = Scratch { store: self, copies: [None; ENTITIES_PER_EVENT_MAX] };
        let features = features_of(&mut scratch, event);
        (features, Update { copies: scratch.copies })
    }

    /// Counts an event [`FeatureStore::prepare`]d against this store's current state.
    pub fn commit(&mut self, update: Update) {
        for (key, stats) in update.copies.into_iter().flatten() {
            *self.entry(key).0 = stats;
        }
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
            for tally in &stats.frauds {
                out.extend_from_slice(&tally.bucket.to_le_bytes());
                out.extend_from_slice(&tally.count_now.to_le_bytes());
                out.extend_from_slice(&tally.count_prev.to_le_bytes());
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
        let magic = reader.take(4)?;
        let v1 = magic == SNAPSHOT_MAGIC_V1;
        if magic != SNAPSHOT_MAGIC && !v1 {
            return Err(SnapshotError::Magic);
        }
        let record_bytes = if v1 { RECORD_BYTES_V1 } else { RECORD_BYTES };
        let capacity = reader.u64()? as usize;
        let cursor = reader.u64()?;
        let evicted = reader.u64()?;
        let count = reader.u64()? as usize;
        if bytes.len() != reader.at + count.saturating_mul(record_bytes) {
            return Err(SnapshotError::Length);
        }
        let mut store = FeatureStore::with_capacity(capacity);
        store.cursor = cursor;
        store.evicted = evicted;
        store.entities.reserve(count);
        let slots: &[usize] = if v1 { &WINDOWS_OF_V1 } else { &[0, 1, 2, 3, 4] };
        for index in 0..count {
            let [kind_byte] = reader.array()?;
            let kind = Kind::from_u8(kind_byte).ok_or(SnapshotError::Kind(kind_byte))?;
            let id = u128::from_le_bytes(reader.array()?);
            let mut stats = Stats::default();
            for slot in slots {
                let window = stats.windows.get_mut(*slot).ok_or(SnapshotError::Length)?;
                window.bucket = reader.u32()?;
                window.count_now = reader.u32()?;
                window.count_prev = reader.u32()?;
                window.sum_now = reader.u64()?;
                window.sum_prev = reader.u64()?;
            }
            if !v1 {
                for tally in &mut stats.frauds {
                    tally.bucket = reader.u32()?;
                    tally.count_now = reader.u32()?;
                    tally.count_prev = reader.u32()?;
                }
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

/// A labelled history fed through a [`FeatureStore`] in time order, each label entering at the
/// time it became known: what the server would have computed live, for training. Give events in
/// time order; before each, every label known by its time is counted. Times may be given in ns
/// ([`Replay::observe_at`], [`Replay::label_at`]) to order an event and a label within one second
/// as they happened.
#[derive(Debug, Default)]
pub struct Replay {
    store: FeatureStore,
    /// Labels not yet known, by (known time in ns, arrival order): a min-heap.
    pending: std::collections::BinaryHeap<std::cmp::Reverse<(u128, u64)>>,
    labels: HashMap<u64, Label>,
    arrivals: u64,
}

impl Replay {
    /// A replay over an empty store of `capacity` entities.
    pub fn with_capacity(capacity: usize) -> Replay {
        Replay { store: FeatureStore::with_capacity(capacity), ..Replay::default() }
    }

    /// Counts every label known by `at_ns` that is not counted yet, oldest first.
    pub fn release_at(&mut self, at_ns: u128) {
        while let Some(std::cmp::Reverse((known_ns, arrival))) = self.pending.peek().copied() {
            if known_ns > at_ns {
                break;
            }
            self.pending.pop();
            if let Some(label) = self.labels.remove(&arrival) {
                self.store.label(&label);
            }
        }
    }

    /// The features of `event`, after counting the labels known by its time.
    pub fn observe(&mut self, event: &Event) -> Features {
        self.observe_at(event, u128::from(event.at_s) * 1_000_000_000)
    }

    /// The features of `event`, which happened at `at_ns` (within its `at_s`), after counting
    /// the labels known by then.
    pub fn observe_at(&mut self, event: &Event, at_ns: u128) -> Features {
        self.release_at(at_ns);
        self.store.observe(event)
    }

    /// A label to count once its time comes (it may lie in the past of the next event: it is
    /// counted before that event).
    pub fn label(&mut self, label: Label) {
        self.label_at(label, u128::from(label.known_at_s) * 1_000_000_000);
    }

    /// [`Replay::label`] with the time it became known in ns (within its `known_at_s`).
    pub fn label_at(&mut self, label: Label, known_ns: u128) {
        self.labels.insert(self.arrivals, label);
        self.pending.push(std::cmp::Reverse((known_ns, self.arrivals)));
        self.arrivals += 1;
    }

    /// Labels waiting for their time.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The store as the replay left it.
    pub fn store(&self) -> &FeatureStore {
        &self.store
    }
}

/// Entities one event touches at most: one of each kind.
const ENTITIES_PER_EVENT_MAX: usize = 7;
const _: () = assert!(Kind::NetworkNewPayers as usize == ENTITIES_PER_EVENT_MAX);

/// What observing one event changes: the new state of each entity it touched, in the order it
/// touched them ([`FeatureStore::prepare`], [`FeatureStore::commit`]).
#[derive(Clone, Copy, Debug)]
pub struct Update {
    copies: [Option<(Key, Stats)>; ENTITIES_PER_EVENT_MAX],
}

/// Copies of a store's entities, updated in place of the store's.
struct Scratch<'a> {
    store: &'a FeatureStore,
    copies: [Option<(Key, Stats)>; ENTITIES_PER_EVENT_MAX],
}

impl Scratch<'_> {
    /// A copy of the entity's state (a fresh one when the store has none), to update.
    fn entry(&mut self, key: Key) -> &mut Stats {
        let at = match self.copies.iter().position(|slot| slot.is_some_and(|(k, _)| k == key)) {
            Some(at) => at,
            None => {
                let found = self.store.index.get(&key).and_then(|&index| self.store.entities.get(index as usize));
                let stats = found.map(|&(_, stats)| stats).unwrap_or_default();
                // An event touches each kind once, so a free slot is always left; were one not,
                // the last would be reused (and that entity's update lost, never another's state).
                let free = self.copies.iter().position(Option::is_none).unwrap_or(ENTITIES_PER_EVENT_MAX - 1);
                if let Some(slot) = self.copies.get_mut(free) {
                    *slot = Some((key, stats));
                }
                free
            }
        };
        match self.copies.get_mut(at) {
            Some(Some((_, stats))) => stats,
            // Unreachable: `at` holds the entity found or just put there.
            _ => unreachable_slot(),
        }
    }
}

#[expect(clippy::panic, reason = "a slot just filled is never empty; reaching this is a bug in `Scratch::entry`")]
fn unreachable_slot() -> ! {
    panic!("the feature scratch lost a slot it had just filled")
}

/// Writes an entity's six feedback features at `at` in `out`.
fn put_feedback(out: &mut [f64; FEATURES_COUNT], at: usize, stats: &Stats, at_s: u64) {
    if let Some(slots) = out.get_mut(at..at + 6) {
        slots.copy_from_slice(&stats.feedback(at_s));
    }
}

/// An event's features, counting the event itself, from the entity state `entities` gives (and
/// updates). An entity is new to a feature ("first sighting") until it has paid once: a label
/// may have created it before (a declined payment's device is known as fraud, not as seen).
fn features_of(entities: &mut Scratch<'_>, event: &Event) -> Features {
    let at = event.at_s;
    let amount = u64::try_from(event.amount_iso_minor).unwrap_or(u64::MAX);
    let mut out = [0.0; FEATURES_COUNT];

    // The payer: windows, and the amount against its own history before this event.
    let payer = entities.entry(Key { kind: Kind::Payer, id: event.payer });
    if payer.events == 0 {
        payer.first_seen_s = at;
    }
    let (mean, deviation) = (payer.mean, payer.variance.sqrt());
    let history = payer.events;
    let (mean_7d_before, mean_30d_before) = (payer.mean_in::<3>(at), payer.mean_in::<4>(at));
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
    out[3] = payer.window::<4>(at).0;
    out[4] = payer.window::<1>(at).1;
    out[5] = payer.window::<2>(at).1;
    out[6] = payer.window::<4>(at).1;
    out[13] = amount_f;
    if history >= 3 {
        out[14] = (amount_f - mean) / deviation.max(1.0);
        out[15] = amount_f / mean.max(1.0);
    }
    out[19] = at.saturating_sub(payer.first_seen_s) as f64 / 86_400.0;
    out[24] = payer.window::<3>(at).0;
    out[25] = payer.mean_in::<2>(at);
    out[26] = payer.mean_in::<3>(at);
    out[27] = payer.mean_in::<4>(at);
    if mean_7d_before > 0.0 {
        out[28] = amount_f / mean_7d_before;
    }
    if mean_30d_before > 0.0 {
        out[29] = amount_f / mean_30d_before;
    }
    put_feedback(&mut out, PAYER_FEEDBACK_AT, &payer, at);

    if let Some(device) = event.device {
        let stats = entities.entry(Key { kind: Kind::Device, id: device });
        let new = stats.events == 0;
        stats.add(at, amount);
        out[7] = stats.window::<0>(at).0;
        out[8] = stats.window::<1>(at).0;
        out[16] = f64::from(u8::from(new));
        let stats = *stats;
        put_feedback(&mut out, DEVICE_FEEDBACK_AT, &stats, at);
    }
    let payee = entities.entry(Key { kind: Kind::Payee, id: event.payee });
    payee.add(at, amount);
    out[9] = payee.window::<0>(at).0;
    out[10] = payee.window::<1>(at).0;
    out[30] = payee.window::<2>(at).0;
    out[31] = payee.window::<3>(at).0;
    out[32] = payee.window::<4>(at).0;
    out[33] = payee.mean_in::<2>(at);
    out[34] = payee.mean_in::<3>(at);
    out[35] = payee.mean_in::<4>(at);
    let payee = *payee;
    put_feedback(&mut out, PAYEE_FEEDBACK_AT, &payee, at);
    let pair = entities.entry(Key { kind: Kind::Pair, id: pair_id(event.payer, event.payee) });
    let pair_new = pair.events == 0;
    pair.add(at, amount);
    out[12] = pair.window::<2>(at).0;
    out[17] = f64::from(u8::from(pair_new));
    if let Some(network) = event.network {
        let network = u128::from(network);
        let stats = entities.entry(Key { kind: Kind::Network, id: network });
        stats.add(at, amount);
        out[11] = stats.window::<1>(at).0;
        let stats = *stats;
        put_feedback(&mut out, NETWORK_FEEDBACK_AT, &stats, at);
        let seen = entities.entry(Key { kind: Kind::PayerNetwork, id: pair_id(event.payer, network) });
        let first = seen.events == 0;
        seen.add(at, amount);
        out[18] = f64::from(u8::from(first));
        let newcomers = entities.entry(Key { kind: Kind::NetworkNewPayers, id: network });
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
    /// A time where a 1-, 7- and 30-day window all start (a multiple of 210 days).
    const W0: u64 = 1_790_000_000 - 1_790_000_000 % (210 * 86_400);

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
        // 272 bytes in the vector slot, 48 in the index: documented in ARCHITECTURE.md.
        assert_eq!(ENTITY_BYTES, 321, "an entity takes {ENTITY_BYTES} bytes");
    }

    #[test]
    fn a_label_counts_on_payee_device_network_and_payer_from_the_time_it_became_known() {
        let mut store = FeatureStore::default();
        for n in 0..10 {
            store.observe(&pay(W0 + n * 600, 1, 2, 100));
        }
        // Fraud on payer 1's payment to payee 2, confirmed two days later.
        let known = W0 + 2 * 86_400;
        store.label(&Label::of(&pay(W0, 1, 2, 100), known));
        // Another payer, through the same payee, network (7) but its own device.
        let later = store.observe(&pay(known + 60, 3, 2, 100));
        assert_eq!(feature(&later, "payee_fraud_1d"), 1.0);
        assert_eq!(feature(&later, "payee_fraud_7d"), 1.0);
        assert_eq!(feature(&later, "network_fraud_30d"), 1.0);
        assert_eq!(feature(&later, "device_fraud_1d"), 0.0, "payer 3's own device");
        assert_eq!(feature(&later, "payer_fraud_1d"), 0.0, "payer 3 is not the payer labelled");
        // One fraud among the payee's payments of the last day (just this one).
        assert_eq!(feature(&later, "payee_fraud_rate_1d"), 1.0);
        assert!(feature(&later, "payee_fraud_rate_30d") > 0.0 && feature(&later, "payee_fraud_rate_30d") < 0.1);
        let own = store.observe(&pay(known + 120, 1, 5, 100));
        assert_eq!((feature(&own, "payer_fraud_1d"), feature(&own, "device_fraud_1d")), (1.0, 1.0));
        // Two days later the 1-day count has slid away; the 7- and 30-day ones keep it.
        let after = store.observe(&pay(known + 2 * 86_400 + 60, 3, 2, 100));
        assert_eq!(feature(&after, "payee_fraud_1d"), 0.0);
        assert_eq!(feature(&after, "payee_fraud_7d"), 1.0);
    }

    #[test]
    fn a_labelled_device_that_never_paid_is_still_new_when_it_first_pays() {
        let mut store = FeatureStore::default();
        let declined = Event { device: Some(666), ..pay(T0, 1, 2, 5_000) };
        store.label(&Label::of(&declined, T0 + 10));
        let first = store.observe(&Event { at_s: T0 + 20, ..declined });
        assert_eq!(feature(&first, "device_new"), 1.0);
        assert_eq!(feature(&first, "device_fraud_1d"), 1.0);
        assert_eq!(feature(&first, "device_fraud_rate_1d"), 1.0);
        assert_eq!(feature(&first, "payer_age_days"), 0.0, "the payer's age counts from its first payment");
    }

    #[test]
    fn windows_of_a_payer_and_a_payee_give_counts_means_and_the_amount_against_them() {
        let mut store = FeatureStore::default();
        for n in 0..4 {
            store.observe(&pay(W0 + n * 86_400, 1, 2, 100 + 100 * n as u128));
        }
        // Payer 1 paid 100, 200, 300, 400 on four days; now 1,250 on the fifth.
        let f = store.observe(&pay(W0 + 4 * 86_400 + 43_200, 1, 2, 1_250));
        assert_eq!(feature(&f, "payer_count_7d"), 5.0);
        assert_eq!(feature(&f, "payer_mean_7d"), 2_250.0 / 5.0);
        assert_eq!(feature(&f, "amount_over_payer_mean_7d"), 1_250.0 / 250.0, "against the mean before it");
        assert_eq!(feature(&f, "payee_count_30d"), 5.0);
        assert_eq!(feature(&f, "payee_mean_30d"), 450.0);
        // At noon the day before counts for half (the sliding estimate).
        assert_eq!(feature(&f, "payee_count_1d"), 1.5);
    }

    /// Random histories: payments over a few payers, payees, devices and networks, and labels
    /// of some of them known a random time later.
    fn history() -> impl proptest::strategy::Strategy<Value = (Vec<Event>, Vec<(usize, u64)>)> {
        use proptest::prelude::*;
        let event = (0u64..40 * 86_400, 1u128..6, 1u128..5, 0u128..4, 0u64..3, 1u128..5_000);
        (proptest::collection::vec(event, 1..120), proptest::collection::vec((0usize..120, 0u64..20 * 86_400), 0..40))
            .prop_map(|(raw, labels)| {
                let mut events: Vec<Event> = raw
                    .into_iter()
                    .map(|(at, payer, payee, device, network, amount)| Event {
                        at_s: T0 + at,
                        payer,
                        payee,
                        device: (device > 0).then_some(payer * 10 + device),
                        network: (network > 0).then_some(network),
                        amount_iso_minor: amount,
                        ..Event::default()
                    })
                    .collect();
                events.sort_by_key(|e| e.at_s);
                let n = events.len();
                let labels = labels.into_iter().map(|(i, delay)| (i % n, delay)).collect();
                (events, labels)
            })
    }

    /// Every event's features, the labels (event index, delay) fed as known at the event's time
    /// plus the delay, kept only if `keep` says so.
    fn replayed(events: &[Event], labels: &[(usize, u64)], keep: impl Fn(u64) -> bool) -> Vec<Features> {
        let mut replay = Replay::with_capacity(10_000);
        events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let features = replay.observe(event);
                for (_, delay) in labels.iter().filter(|(i, _)| *i == index) {
                    let known = event.at_s + delay;
                    if keep(known) {
                        replay.label(Label::of(event, known));
                    }
                }
                features
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Leakage: a feature vector computed at decision time never changes when labels known
        /// after that time are added or removed.
        #[test]
        fn labels_known_after_a_decision_never_change_its_features((events, labels) in history(), cut in 0u64..60 * 86_400) {
            let cut_s = T0 + cut;
            let all = replayed(&events, &labels, |_| true);
            let known_by_cut = replayed(&events, &labels, |known| known <= cut_s);
            for ((event, with_all), with_known) in events.iter().zip(&all).zip(&known_by_cut) {
                if event.at_s <= cut_s {
                    proptest::prop_assert_eq!(with_all.0, with_known.0, "at {} (cut {})", event.at_s, cut_s);
                }
            }
        }

        /// Offline equals online: the replay computes exactly what a live store computes when
        /// each label is counted at the moment it becomes known, between payments.
        #[test]
        fn a_replay_computes_what_the_live_store_computed((events, labels) in history()) {
            let offline = replayed(&events, &labels, |_| true);
            let mut live = FeatureStore::with_capacity(10_000);
            let mut due: Vec<(u64, usize, Label)> = Vec::new();
            for (index, event) in events.iter().enumerate() {
                // The live server learns of labels as time passes, before later payments.
                due.sort_by_key(|(known, arrival, _)| (*known, *arrival));
                while due.first().is_some_and(|(known, _, _)| *known <= event.at_s) {
                    let (_, _, label) = due.remove(0);
                    live.label(&label);
                }
                let features = live.observe(event);
                proptest::prop_assert_eq!(features.0, offline[index].0);
                for (_, delay) in labels.iter().filter(|(i, _)| *i == index) {
                    let arrival = due.len() + index * 1_000;
                    due.push((event.at_s + delay, arrival, Label::of(event, event.at_s + delay)));
                }
            }
        }
    }

    #[test]
    fn a_snapshot_of_the_first_layout_restores_its_windows_and_no_fraud() {
        let mut store = FeatureStore::with_capacity(64);
        for n in 0..50u64 {
            store.observe(&pay(T0 + n * 3_000, u128::from(n % 5), 2, 100));
        }
        store.label(&Label::of(&pay(T0, 1, 2, 100), T0 + 200_000));
        // The first layout wrote four windows (no 7-day one) and no fraud counts.
        let current = store.snapshot();
        let mut v1 = SNAPSHOT_MAGIC_V1.to_vec();
        v1.extend_from_slice(&current[4..36]);
        for (key, stats) in &store.entities {
            v1.push(key.kind as u8);
            v1.extend_from_slice(&key.id.to_le_bytes());
            for slot in WINDOWS_OF_V1 {
                let window = stats.windows[slot];
                v1.extend_from_slice(&window.bucket.to_le_bytes());
                v1.extend_from_slice(&window.count_now.to_le_bytes());
                v1.extend_from_slice(&window.count_prev.to_le_bytes());
                v1.extend_from_slice(&window.sum_now.to_le_bytes());
                v1.extend_from_slice(&window.sum_prev.to_le_bytes());
            }
            v1.extend_from_slice(&stats.first_seen_s.to_le_bytes());
            v1.extend_from_slice(&stats.last_seen_s.to_le_bytes());
            v1.extend_from_slice(&stats.mean.to_bits().to_le_bytes());
            v1.extend_from_slice(&stats.variance.to_bits().to_le_bytes());
            v1.extend_from_slice(&stats.events.to_le_bytes());
        }
        let restored = FeatureStore::restore(&v1).unwrap();
        assert_eq!(restored.len(), store.len());
        let payee = restored.get(Key { kind: Kind::Payee, id: 2 }).unwrap();
        let original = store.get(Key { kind: Kind::Payee, id: 2 }).unwrap();
        assert_eq!((payee.windows[4], payee.windows[2], payee.events), (original.windows[4], original.windows[2], 50));
        assert_eq!(payee.windows[3], Window::default(), "no 7-day window in the first layout");
        assert_eq!(payee.frauds, [Tally::default(); 3]);
        assert_eq!(FeatureStore::restore(&v1[..v1.len() - 1]).unwrap_err(), SnapshotError::Length);
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
