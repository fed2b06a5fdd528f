//! A traffic simulator: customers with devices and home networks, merchants of several kinds,
//! daily rhythms and micropayment amounts, and injected fraud of seven kinds (account takeover,
//! card testing, a cloned device, velocity abuse, many victims paying through one new cell at
//! night as in the 2025 KT femtocell case, a compromised payee whose every payment is fraud for
//! two weeks, and a compromised payer a share of whose payments are several times its usual
//! amount for two weeks). Every fraud's label becomes known some days after the payment, as
//! confirmed fraud does. Deterministic: one seed gives the same events, in time order, every
//! time. Used to develop features and rules, to train and measure the model, and for demos and
//! load tests.

use crate::features::Event;

/// How fraud was injected into an event, if it was.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum FraudKind {
    /// A stolen account used from a new device and network, at night, on cash-like goods.
    AccountTakeover,
    /// Bursts of tiny payments from a new device to many merchants.
    CardTesting,
    /// A customer's device id used from another network at the same time.
    ClonedDevice,
    /// A customer's own device paying far faster than its habit.
    VelocityAbuse,
    /// Many customers newly paying cash-like merchants through one new cell.
    CellCluster,
    /// A merchant taken over: every payment to it is fraud for two weeks (ordinary customers,
    /// ordinary amounts: only the fraud already confirmed on it tells).
    CompromisedPayee,
    /// A customer's credentials used for two weeks: a third of its payments, at five times the
    /// amount it would have paid.
    CompromisedPayer,
}

impl FraudKind {
    /// Every kind.
    pub const ALL: [FraudKind; 7] = [
        FraudKind::AccountTakeover,
        FraudKind::CardTesting,
        FraudKind::ClonedDevice,
        FraudKind::VelocityAbuse,
        FraudKind::CellCluster,
        FraudKind::CompromisedPayee,
        FraudKind::CompromisedPayer,
    ];

    /// The kind named `name` ([`FraudKind::as_str`]).
    pub fn parse(name: &str) -> Option<FraudKind> {
        FraudKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// A short name (CSV `fraud_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            FraudKind::AccountTakeover => "account_takeover",
            FraudKind::CardTesting => "card_testing",
            FraudKind::ClonedDevice => "cloned_device",
            FraudKind::VelocityAbuse => "velocity_abuse",
            FraudKind::CellCluster => "cell_cluster",
            FraudKind::CompromisedPayee => "compromised_payee",
            FraudKind::CompromisedPayer => "compromised_payer",
        }
    }
}

/// An honest micropayment habit: streams and bursts that card-payment rules mistake for fraud.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// A meter paying one cent every second for 5 to 15 minutes, to one utility.
    Meter,
    /// A reader paying 10 to 25 cents an article for 30 articles in a burst, to one publisher.
    Reader,
    /// A game session: about 20 in-game items over half an hour, some in quick succession.
    Game,
    /// An API agent paying one cent per call, every 1 to 3 seconds for 10 minutes.
    Agent,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [Profile::Meter, Profile::Reader, Profile::Game, Profile::Agent];

    /// A short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Meter => "meter",
            Profile::Reader => "reader",
            Profile::Game => "game_session",
            Profile::Agent => "api_agent",
        }
    }
}

/// One simulated payment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SimEvent {
    /// What the risk engine sees.
    pub event: Event,
    /// Whether it is fraud, and which kind.
    pub fraud: Option<FraudKind>,
    /// For a good payment, the honest micropayment habit it belongs to, if any (`None`: an
    /// ordinary purchase).
    pub profile: Option<Profile>,
    /// For fraud, when its label becomes known (seconds since the Unix epoch; days after the
    /// payment); 0 for a good payment.
    pub label_known_s: u64,
}

/// What to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Seed: everything follows from it.
    pub seed: u64,
    /// Customers.
    pub customers: u32,
    /// Merchants (a fifth sell cash-like goods).
    pub merchants: u32,
    /// Days simulated.
    pub days: u32,
    /// First second (a UTC midnight is best).
    pub start_s: u64,
    /// Fraud incidents of each kind per day.
    pub incidents_per_day: u32,
    /// Sessions of each honest micropayment profile per day.
    pub sessions_per_day: u32,
    /// Fewest and most whole days between a fraud and its label becoming known.
    pub label_delay_days: (u32, u32),
    /// Days a compromised payee or payer stays compromised.
    pub compromised_days: u32,
    /// Days between two payees being compromised (one at a time starts, the first on day 0).
    pub payee_compromise_every_days: u32,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            customers: 2_000,
            merchants: 200,
            days: 7,
            start_s: 1_798_761_600,
            incidents_per_day: 2,
            sessions_per_day: 3,
            label_delay_days: (1, 7),
            compromised_days: 14,
            payee_compromise_every_days: 4,
        }
    }
}

/// A small deterministic generator (xorshift64*), for simulations and benchmarks whose runs must
/// be comparable.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }
}

struct Customer {
    device: u128,
    network: u64,
    payments_per_day: u64,
    favourite: [u32; 3],
    night_owl: bool,
}

impl Customer {
    /// The customer's favourite merchant `n`, counting round the three.
    fn favourite(&self, n: u64) -> u32 {
        let [first, second, third] = self.favourite;
        match n % 3 {
            0 => first,
            1 => second,
            _ => third,
        }
    }
}

const CUSTOMER_BASE: u128 = 1_000_000;
const DEVICE_BASE: u128 = 5_000_000;
const MERCHANT_BASE: u128 = 9_000_000;
const FRAUD_DEVICE_BASE: u128 = 8_000_000;
const STREAM_PAYEE_BASE: u128 = 9_500_000;

fn cash_like(merchant: u32) -> bool {
    merchant.is_multiple_of(5)
}

/// Price of merchant `m`'s goods, ISO 4217 minor units (cents): from 5 cents to about $20.
fn price(merchant: u32) -> u64 {
    match merchant % 7 {
        0 => 5,
        1 => 25,
        2 => 99,
        3 => 250,
        4 => 499,
        5 => 999,
        _ => 1_999,
    }
}

/// Simulates `config`: every event, in time order.
pub fn simulate(config: &SimConfig) -> Vec<SimEvent> {
    let mut rng = Rng(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let merchants = config.merchants.max(10);
    let customers: Vec<Customer> = (0..config.customers.max(1))
        .map(|c| Customer {
            device: DEVICE_BASE + u128::from(c),
            network: 1_000 + rng.below(400),
            payments_per_day: 1 + rng.below(6),
            favourite: [
                rng.below(u64::from(merchants)) as u32,
                rng.below(u64::from(merchants)) as u32,
                rng.below(u64::from(merchants)) as u32,
            ],
            night_owl: rng.chance(100),
        })
        .collect();
    let mut events = Vec::new();
    let mut fraud_devices = 0u128;
    for day in 0..u64::from(config.days) {
        let midnight = config.start_s + day * 86_400;
        for (index, customer) in customers.iter().enumerate() {
            for _ in 0..customer.payments_per_day {
                // Daytime and evening rhythm; night owls also pay after midnight.
                let hour = if customer.night_owl && rng.chance(300) { rng.below(6) } else { 7 + rng.below(16) };
                let merchant = if rng.chance(800) {
                    customer.favourite(rng.below(3))
                } else {
                    rng.below(u64::from(merchants)) as u32
                };
                let jitter = price(merchant) / 4 + 1;
                let amount = price(merchant) - jitter / 2 + rng.below(jitter);
                events.push(SimEvent {
                    event: Event {
                        at_s: midnight + hour * 3_600 + rng.below(3_600),
                        payer: CUSTOMER_BASE + index as u128,
                        device: Some(customer.device),
                        payee: MERCHANT_BASE + u128::from(merchant),
                        network: Some(if rng.chance(50) { 1_000 + rng.below(400) } else { customer.network }),
                        amount_iso_minor: u128::from(amount),
                        failed_auth_count: u32::from(rng.chance(20)),
                        payee_cash_like: cash_like(merchant),
                    },
                    fraud: None,
                    profile: None,
                    label_known_s: 0,
                });
            }
        }
        for _ in 0..config.sessions_per_day {
            for profile in Profile::ALL {
                let index = rng.below(customers.len() as u64) as usize;
                let Some(customer) = customers.get(index) else { continue };
                let payer = CUSTOMER_BASE + index as u128;
                let start = midnight + 6 * 3_600 + rng.below(16 * 3_600);
                // Each profile pays one payee of its own kind (never cash-like).
                let payee = STREAM_PAYEE_BASE + u128::from(profile as u8) * 100 + u128::from(rng.below(20) as u8);
                let (count, gaps, amounts): (u64, (u64, u64), (u64, u64)) = match profile {
                    Profile::Meter => (300 + rng.below(600), (1, 1), (1, 1)),
                    Profile::Reader => (30, (5, 30), (10, 25)),
                    Profile::Game => (15 + rng.below(10), (5, 180), (99, 499)),
                    Profile::Agent => (200 + rng.below(200), (1, 3), (1, 1)),
                };
                let mut at = start;
                for _ in 0..count {
                    events.push(SimEvent {
                        event: Event {
                            at_s: at,
                            payer,
                            device: Some(customer.device),
                            payee,
                            network: Some(customer.network),
                            amount_iso_minor: u128::from(amounts.0 + rng.below(amounts.1 - amounts.0 + 1)),
                            failed_auth_count: 0,
                            payee_cash_like: false,
                        },
                        fraud: None,
                        profile: Some(profile),
                        label_known_s: 0,
                    });
                    at += gaps.0 + rng.below(gaps.1 - gaps.0 + 1);
                }
            }
        }
        for _ in 0..config.incidents_per_day {
            for kind in FraudKind::ALL {
                let victim = rng.below(customers.len() as u64) as usize;
                let payer = CUSTOMER_BASE + victim as u128;
                let at = midnight + rng.below(86_400 - 7_200);
                let mut push =
                    |event: Event| events.push(SimEvent { event, fraud: Some(kind), profile: None, label_known_s: 0 });
                match kind {
                    FraudKind::AccountTakeover => {
                        fraud_devices += 1;
                        let night = midnight + rng.below(5 * 3_600);
                        for n in 0..(3 + rng.below(5)) {
                            let merchant = rng_cash(&mut rng, merchants);
                            push(Event {
                                at_s: night + n * 90,
                                payer,
                                device: Some(FRAUD_DEVICE_BASE + fraud_devices),
                                payee: MERCHANT_BASE + u128::from(merchant),
                                network: Some(50_000 + rng.below(1_000)),
                                amount_iso_minor: u128::from(5_000 + rng.below(15_000)),
                                failed_auth_count: 2 + rng.below(3) as u32,
                                payee_cash_like: true,
                            });
                        }
                    }
                    FraudKind::CardTesting => {
                        fraud_devices += 1;
                        for n in 0..(15 + rng.below(20)) {
                            let merchant = rng.below(u64::from(merchants)) as u32;
                            push(Event {
                                at_s: at + n * 4,
                                payer,
                                device: Some(FRAUD_DEVICE_BASE + fraud_devices),
                                payee: MERCHANT_BASE + u128::from(merchant),
                                network: Some(60_000 + rng.below(1_000)),
                                amount_iso_minor: u128::from(1 + rng.below(3)),
                                failed_auth_count: 0,
                                payee_cash_like: cash_like(merchant),
                            });
                        }
                    }
                    FraudKind::ClonedDevice => {
                        let Some(customer) = customers.get(victim) else { continue };
                        for n in 0..(2 + rng.below(4)) {
                            let merchant = rng_cash(&mut rng, merchants);
                            push(Event {
                                at_s: at + n * 300,
                                payer,
                                device: Some(customer.device),
                                payee: MERCHANT_BASE + u128::from(merchant),
                                network: Some(70_000 + rng.below(1_000)),
                                amount_iso_minor: u128::from(2_000 + rng.below(8_000)),
                                failed_auth_count: 0,
                                payee_cash_like: true,
                            });
                        }
                    }
                    FraudKind::VelocityAbuse => {
                        let Some(customer) = customers.get(victim) else { continue };
                        for n in 0..(25 + rng.below(25)) {
                            let merchant = customer.favourite(n);
                            push(Event {
                                at_s: at + n * 10,
                                payer,
                                device: Some(customer.device),
                                payee: MERCHANT_BASE + u128::from(merchant),
                                network: Some(customer.network),
                                amount_iso_minor: u128::from(price(merchant)),
                                failed_auth_count: 0,
                                payee_cash_like: cash_like(merchant),
                            });
                        }
                    }
                    FraudKind::CellCluster => {
                        let cell = 90_000 + day * 100 + rng.below(100);
                        let night = midnight + rng.below(4 * 3_600);
                        for n in 0..(10 + rng.below(15)) {
                            let victim = rng.below(customers.len() as u64) as usize;
                            let Some(customer) = customers.get(victim) else { continue };
                            let merchant = rng_cash(&mut rng, merchants);
                            push(Event {
                                at_s: night + n * 120,
                                payer: CUSTOMER_BASE + victim as u128,
                                device: Some(customer.device),
                                payee: MERCHANT_BASE + u128::from(merchant),
                                network: Some(cell),
                                amount_iso_minor: u128::from(3_000 + rng.below(7_000)),
                                failed_auth_count: 0,
                                payee_cash_like: true,
                            });
                        }
                    }
                    // Made from ordinary traffic after it is all drawn (below).
                    FraudKind::CompromisedPayee | FraudKind::CompromisedPayer => {}
                }
            }
        }
    }
    compromise(config, &mut rng, merchants, &mut events);
    events.sort_by_key(|e| (e.event.at_s, e.event.payer));
    // Each incident's labels become known together, some days after its last payment at the
    // latest: drawn per payer and kind so an incident's payments share a delay.
    let (fewest, most) =
        (u64::from(config.label_delay_days.0), u64::from(config.label_delay_days.1.max(config.label_delay_days.0)));
    let mut delays: std::collections::HashMap<(u128, FraudKind), u64> = std::collections::HashMap::new();
    for event in &mut events {
        let Some(kind) = event.fraud else { continue };
        let key = (if kind == FraudKind::CompromisedPayee { event.event.payee } else { event.event.payer }, kind);
        let delay_s =
            *delays.entry(key).or_insert_with(|| (fewest + rng.below(most - fewest + 1)) * 86_400 + rng.below(86_400));
        event.label_known_s = event.event.at_s + delay_s;
    }
    events
}

/// Turns ordinary payments into the two kinds of compromise: every payment to a compromised
/// payee while it is compromised, and a third of a compromised payer's (at five times the amount).
fn compromise(config: &SimConfig, rng: &mut Rng, merchants: u32, events: &mut [SimEvent]) {
    let window_s = u64::from(config.compromised_days.max(1)) * 86_400;
    let mut payees: Vec<(u128, u64)> = Vec::new();
    let every = config.payee_compromise_every_days.max(1);
    for day in (0..config.days).step_by(every as usize) {
        let merchant = rng.below(u64::from(merchants)) as u32;
        payees
            .push((MERCHANT_BASE + u128::from(merchant), config.start_s + u64::from(day) * 86_400 + rng.below(86_400)));
    }
    let mut payers: Vec<(u128, u64)> = Vec::new();
    for day in 0..u64::from(config.days) {
        for _ in 0..config.incidents_per_day {
            let victim = rng.below(u64::from(config.customers.max(1)));
            payers.push((CUSTOMER_BASE + u128::from(victim), config.start_s + day * 86_400 + rng.below(86_400)));
        }
    }
    let inside = |list: &[(u128, u64)], id: u128, at: u64| {
        list.iter().any(|(who, from)| *who == id && (*from..from + window_s).contains(&at))
    };
    for event in events.iter_mut().filter(|e| e.fraud.is_none() && e.profile.is_none()) {
        if inside(&payees, event.event.payee, event.event.at_s) {
            event.fraud = Some(FraudKind::CompromisedPayee);
        } else if inside(&payers, event.event.payer, event.event.at_s) && rng.below(3) == 0 {
            event.fraud = Some(FraudKind::CompromisedPayer);
            event.event.amount_iso_minor = event.event.amount_iso_minor.saturating_mul(5);
        }
    }
}

fn rng_cash(rng: &mut Rng, merchants: u32) -> u32 {
    (rng.below(u64::from(merchants / 5).max(1)) * 5) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureStore;

    #[test]
    fn one_seed_gives_the_same_traffic_and_another_seed_other_traffic() {
        let config = SimConfig { customers: 300, days: 2, ..SimConfig::default() };
        assert_eq!(simulate(&config), simulate(&config));
        assert_ne!(simulate(&config), simulate(&SimConfig { seed: 2, ..config }));
    }

    #[test]
    fn every_fraud_kind_is_injected_and_events_are_in_time_order() {
        let events = simulate(&SimConfig { customers: 500, days: 3, ..SimConfig::default() });
        for kind in FraudKind::ALL {
            assert!(events.iter().filter(|e| e.fraud == Some(kind)).count() >= 6, "{kind:?}");
        }
        assert!(events.windows(2).all(|pair| pair[0].event.at_s <= pair[1].event.at_s));
        let fraud = events.iter().filter(|e| e.fraud.is_some()).count();
        assert!(fraud * 10 < events.len(), "fraud is the minority: {fraud} of {}", events.len());
    }

    #[test]
    fn the_features_tell_each_fraud_kind_from_normal_traffic() {
        let events = simulate(&SimConfig { customers: 800, days: 4, ..SimConfig::default() });
        let mut store = FeatureStore::default();
        let mut sums: std::collections::BTreeMap<(Option<FraudKind>, &str), (f64, f64)> = Default::default();
        let names =
            ["device_new", "network_new_payers_1h", "payer_count_1m", "network_new_for_payer", "failed_auth_count"];
        for event in &events {
            let features = store.observe(&event.event);
            // Honest streams pay many times a minute too: "normal" here is ordinary purchases
            // (the rules tell streams apart by how they spread over payees).
            if event.profile.is_some() {
                continue;
            }
            for name in names {
                let entry = sums.entry((event.fraud, name)).or_default();
                entry.0 += features.get(name).unwrap();
                entry.1 += 1.0;
            }
        }
        let mean = |kind: Option<FraudKind>, name| sums[&(kind, name)].0 / sums[&(kind, name)].1;
        let normal = |name| mean(None, name);
        assert!(mean(Some(FraudKind::AccountTakeover), "device_new") > 2.0 * normal("device_new"));
        assert!(mean(Some(FraudKind::AccountTakeover), "failed_auth_count") > 10.0 * normal("failed_auth_count"));
        assert!(mean(Some(FraudKind::CardTesting), "payer_count_1m") > 5.0 * normal("payer_count_1m"));
        assert!(mean(Some(FraudKind::VelocityAbuse), "payer_count_1m") > 5.0 * normal("payer_count_1m"));
        assert!(mean(Some(FraudKind::ClonedDevice), "network_new_for_payer") > 5.0 * normal("network_new_for_payer"));
        assert!(mean(Some(FraudKind::CellCluster), "network_new_payers_1h") > 3.0 * normal("network_new_payers_1h"));
    }
}
