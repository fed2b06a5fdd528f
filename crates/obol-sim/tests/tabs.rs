//! Goal: whatever vouchers and ticks arrive, whenever the store crashes, the ledger after
//! settlement pays each payee exactly what it was acknowledged, takes exactly that from the payer,
//! and holds nothing back in escrow.
//! Method: proptest draws a stream of payments into three tabs (signed vouchers, forged ones, old
//! ones re-presented, PayWord ticks with skips and wrong words, top-ups) and a seed for a store that
//! crashes before writes, tears writes and loses acknowledgements (`FaultyStore`). Each payment is
//! checked as the HTTP layer checks it, then committed; after a crash the node reopens from the
//! disk and the same record is sent again until it is answered, as a payee would retry. A model
//! kept beside the ledger says what each tab owes; after every answer, and after settlement, the
//! ledger must agree with it to the unit.

use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, Network, TabCommand, TabResult, Voucher, payword_chain};
use obol_core::identity::{IdentityCommand, Role};
use obol_core::ledger::{AccountFlags, NewAccount, NewTransfer, OpResults, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_sim::{Disk, Faults, FaultyStore};
use obol_store::{Node, StoreError};
use proptest::prelude::*;

const TABS: u128 = 3;
const ESCROW: u128 = 500;
const CHAIN: u32 = 40;
const TICK_VALUE: u128 = 3;
const PAYER: u128 = 1;
const PAYEE: u128 = 2;

#[derive(Clone, Debug)]
enum Action {
    /// A voucher adding `add` to tab `tab`; `forged` flips a bit of the amount after signing.
    Voucher { tab: u128, add: u128, forged: bool },
    /// The tab's previous voucher again.
    Replay { tab: u128 },
    /// Reveal the word `skip` ticks ahead on the PayWord tab; `wrong` sends a bad word.
    Tick { skip: u32, wrong: bool },
    /// Add to a tab's escrow.
    TopUp { tab: u128, amount: u128 },
}

fn any_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (1..=TABS - 1, 0u128..120, prop::bool::weighted(0.15)).prop_map(|(tab, add, forged)| Action::Voucher { tab, add, forged }),
        1 => (1..=TABS - 1).prop_map(|tab| Action::Replay { tab }),
        4 => (1u32..4, prop::bool::weighted(0.15)).prop_map(|(skip, wrong)| Action::Tick { skip, wrong }),
        1 => (1..=TABS - 1, 1u128..200).prop_map(|(tab, amount)| Action::TopUp { tab, amount }),
    ]
}

/// What a tab owes, as the payee was told.
#[derive(Clone, Debug, Default)]
struct ModelTab {
    escrow: u128,
    cumulative: u128,
    seq: u64,
    last_voucher: Option<Voucher>,
    tick_index: u32,
}

struct World {
    disk: Arc<Mutex<Disk>>,
    faults: Faults,
    seed: u64,
    node: Node<FaultyStore>,
    now_ns: u64,
    crashes: u32,
}

impl World {
    fn open(disk: &Arc<Mutex<Disk>>, seed: u64, faults: Faults) -> Node<FaultyStore> {
        Node::open(FaultyStore::new(Arc::clone(disk), seed, faults), 7).expect("replay")
    }

    /// Commits `ops` until it is answered, reopening the node after each injected crash.
    fn commit(&mut self, ops: Vec<Op>) -> Vec<OpResults> {
        self.now_ns += 1_000_000;
        let record = Record { now_ns: self.now_ns, ops };
        loop {
            match self.node.commit(&record) {
                Ok(results) => return results,
                Err(StoreError::Injected(_)) => {
                    self.crashes += 1;
                    self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let disk = Arc::clone(&self.disk);
                    self.node = World::open(&disk, self.seed, self.faults);
                }
                Err(other) => panic!("store error: {other}"),
            }
        }
    }

    fn tab(&mut self, command: TabCommand) -> TabResult {
        match self.commit(vec![Op::Tab(command)])[..] {
            [OpResults::Tab(result)] => result,
            ref other => panic!("unexpected answer {other:?}"),
        }
    }

    fn owed(&self, tab: u128) -> u128 {
        self.node.ledger().read().unwrap().tab(tab).expect("tab").tab.cumulative
    }
}

fn usd() -> Asset {
    Asset::new("USD", 2).unwrap()
}

fn run(actions: &[Action], seed: u64) -> Result<u32, TestCaseError> {
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let faults = Faults { crash_before_write: 60, torn_write: 60, crash_after_write: 60 };
    let disk = Arc::new(Mutex::new(Disk::default()));
    let node = World::open(&disk, seed, faults);
    let mut world = World { disk, faults, seed, node, now_ns: 1_700_000_000_000_000_000, crashes: 0 };
    let account = |id: u128, owner_id: u128, flags: u16| NewAccount {
        id,
        owner_id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: usd(),
        code: 1,
        flags: AccountFlags(flags),
    };
    let fund = NewTransfer {
        id: 1,
        debit_account_id: 3,
        credit_account_id: PAYER,
        amount: 100_000,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(usd()),
        code: 1,
        flags: TransferFlags(0),
    };
    world.commit(vec![
        Op::Identity(IdentityCommand::CreatePrincipal { id: 50, role: Role::Holder, name: "payer".into() }),
        Op::Identity(IdentityCommand::RegisterDevice {
            id: 9,
            holder_id: 50,
            kid: "k".into(),
            public_key: key.verifying_key().to_bytes(),
            limits: None,
        }),
        Op::CreateAccounts(vec![
            account(PAYER, 50, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(PAYEE, 0, 0),
            account(3, 0, 0),
        ]),
        Op::CreateTransfers(vec![fund]),
    ]);
    let mut model: Vec<ModelTab> = vec![ModelTab::default(); TABS as usize + 1];
    for tab in 1..=TABS {
        let open = TabCommand::Open {
            tab_id: tab,
            escrow_transfer_id: 100 + tab,
            payer_account_id: PAYER,
            payee_account_id: PAYEE,
            device_id: 9,
            budget: ESCROW,
            asset: usd(),
            timeout_s: 3600,
        };
        // A retry of an open whose answer was lost finds the tab: `Exists` is an answer too.
        let opened = world.tab(open);
        prop_assert!(matches!(opened, TabResult::Ok { .. } | TabResult::Exists), "open {}: {:?}", tab, opened);
        model[tab as usize].escrow = ESCROW;
    }
    // Tab TABS pays by PayWord.
    let chain = payword_chain([8u8; 32], CHAIN);
    let network = Network::named("obol:sim");
    let message = Commitment::signed_message(&network, TABS, PAYEE, &chain[0], CHAIN, TICK_VALUE);
    let commitment = Commitment {
        tab_id: TABS,
        payee_id: PAYEE,
        network,
        root: chain[0],
        length: CHAIN,
        value_per_tick: TICK_VALUE,
        signature: key.sign(&message).to_bytes(),
    };
    let committed = world.tab(TabCommand::Commit(commitment));
    let accepted =
        matches!(committed, TabResult::Ok { .. } | TabResult::Rejected(obol_core::channel::PayReject::Stale));
    prop_assert!(accepted, "commit: {:?}", committed);
    let mut top_ups = 0u128;
    for action in actions {
        match action.clone() {
            Action::Voucher { tab, add, forged } => {
                let m = &model[tab as usize];
                let (cumulative, seq) = (m.cumulative + add, m.seq + 1);
                let mut voucher = Voucher {
                    tab_id: tab,
                    payee_id: PAYEE,
                    cumulative,
                    seq,
                    signature: key.sign(&Voucher::signed_message(&network, tab, PAYEE, cumulative, seq)).to_bytes(),
                };
                if forged {
                    voucher.cumulative ^= 1;
                }
                // The shell's checks, as the HTTP route makes them before journaling.
                let fields = world
                    .node
                    .ledger()
                    .read()
                    .unwrap()
                    .tab(tab)
                    .expect("tab")
                    .tab
                    .check_voucher_fields(&voucher, world.now_ns);
                if fields.is_err() || !voucher.verify(&key.verifying_key(), &network) {
                    prop_assert!(forged || add == 0 || cumulative > m.escrow, "a good voucher was refused: {fields:?}");
                    continue;
                }
                prop_assert!(!forged, "a forged voucher passed the checks");
                match world.tab(TabCommand::Voucher(voucher)) {
                    // Stale: the record reached the disk before a crash took the answer away.
                    TabResult::Ok { .. } | TabResult::Rejected(obol_core::channel::PayReject::Stale) => {}
                    other => prop_assert!(false, "a checked voucher was refused: {other:?}"),
                }
                let m = &mut model[tab as usize];
                m.cumulative = cumulative;
                m.seq = seq;
                m.last_voucher = Some(voucher);
            }
            Action::Replay { tab } => {
                if let Some(voucher) = model[tab as usize].last_voucher {
                    let answer = world.tab(TabCommand::Voucher(voucher));
                    prop_assert_eq!(answer, TabResult::Rejected(obol_core::channel::PayReject::Stale));
                }
            }
            Action::Tick { skip, wrong } => {
                let m = &model[TABS as usize];
                let index = m.tick_index + skip;
                if index > CHAIN {
                    continue;
                }
                let word = if wrong { [0u8; 32] } else { chain[index as usize] };
                let answer = world.tab(TabCommand::Tick { tab_id: TABS, index, word });
                match answer {
                    TabResult::Ok { .. } | TabResult::Rejected(obol_core::channel::PayReject::Stale) if !wrong => {
                        let m = &mut model[TABS as usize];
                        m.cumulative += u128::from(skip) * TICK_VALUE;
                        m.tick_index = index;
                    }
                    TabResult::Rejected(obol_core::channel::PayReject::BadPreimage) if wrong => {}
                    other => prop_assert!(false, "tick {index} (wrong: {wrong}) answered {other:?}"),
                }
            }
            Action::TopUp { tab, amount } => {
                top_ups += 1;
                let command = TabCommand::TopUp {
                    tab_id: tab,
                    amount,
                    void_transfer_id: 10_000 + top_ups,
                    escrow_transfer_id: 20_000 + top_ups,
                };
                let answer = world.tab(command);
                prop_assert!(matches!(answer, TabResult::Ok { .. } | TabResult::Exists), "top-up: {:?}", answer);
                model[tab as usize].escrow += amount;
            }
        }
        for tab in 1..=TABS {
            prop_assert_eq!(
                world.owed(tab),
                model[tab as usize].cumulative,
                "tab {} owes what the payee was told",
                tab
            );
        }
    }
    for tab in 1..=TABS {
        let answer = world.tab(TabCommand::Settle { tab_id: tab, settle_transfer_id: 1_000 + tab });
        prop_assert!(matches!(answer, TabResult::Ok { .. } | TabResult::Exists), "settle {tab}: {answer:?}");
    }
    let owed: u128 = model.iter().map(|m| m.cumulative).sum();
    let ledger = world.node.ledger();
    let ledger = ledger.read().unwrap();
    let payer = ledger.account(PAYER).unwrap().balances;
    let payee = ledger.account(PAYEE).unwrap().balances;
    prop_assert_eq!(payee.credits_posted, owed, "the payee gets exactly what was acknowledged");
    prop_assert_eq!(payer.debits_posted, owed, "the payer pays exactly that");
    prop_assert_eq!((payer.debits_pending, payee.credits_pending), (0, 0), "no escrow is left held");
    Ok(world.crashes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn settlement_pays_exactly_the_acknowledged_payments_across_crashes(
        actions in prop::collection::vec(any_action(), 1..80),
        seed in any::<u64>(),
    ) {
        run(&actions, seed)?;
    }
}

#[test]
fn the_faulty_store_really_crashes_during_payment_streams() {
    let actions: Vec<Action> = (0..200)
        .map(|n| match n % 3 {
            0 => Action::Voucher { tab: 1 + (n % 2) as u128, add: 1, forged: false },
            1 => Action::Tick { skip: 1, wrong: false },
            _ => Action::Replay { tab: 1 },
        })
        .collect();
    let crashes = run(&actions, 42).expect("the property holds");
    assert!(crashes > 20, "the store crashed {crashes} times in 200 payments");
}
