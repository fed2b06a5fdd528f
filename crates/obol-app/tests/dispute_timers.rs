//! Goal: a dispute's legal timers act on the business-day calendar of the law that applies, as
//! days pass: PSD2 credits an unauthorised payment's payer at once; Reg E credits the payer on the
//! last of its business days (20 for a new account) when the investigation runs longer and
//! resolves for the payer when the investigation outlives its days (90 for a new account); a payee that misses its answer deadline loses;
//! and the ledger conserves money at every step.
//! Method: the application layer over a real SQLite store, with a clock the test moves forward
//! day by day; the timer sweep is the one `obol serve` runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use obol_app::App;
use obol_app::auth::{Caller, Via};
use obol_app::disputes::{self, Decision, OpenAsk};
use obol_core::identity::{IdentityCommand, Role, Scopes};
use obol_core::ledger::{AccountFlags, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::Op;
use obol_store::{Engine, Node, SqliteStore};

const DAY_NS: u64 = 86_400_000_000_000;
/// Monday 2026-11-16, 12:00 UTC.
const START_NS: u64 = 1_794_830_400_000_000_000;

/// Wall time moved by the test.
struct Clock(AtomicU64);

impl obol_app::Env for Clock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn fill(&self, bytes: &mut [u8]) {
        obol_app::SystemEnv.fill(bytes);
    }
}

struct World {
    app: App,
    clock: Arc<Clock>,
    asset: Asset,
    holder: Caller,
    merchant: Caller,
    operator: Caller,
    _dir: std::path::PathBuf,
}

fn caller(principal_id: u128, role: Role) -> Caller {
    Caller { principal_id, role, scopes: Scopes(Scopes::ALL), via: Via::ApiKey(format!("k{principal_id}")), peer: None }
}

fn account(id: u128, owner_id: u128, asset: Asset, flags: u16) -> NewAccount {
    NewAccount {
        id,
        owner_id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset,
        code: 1,
        flags: AccountFlags(flags),
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128, asset: Asset) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(asset),
        code: 1,
        flags: TransferFlags(0),
    }
}

async fn world(tag: &str, code: &str) -> World {
    let dir = std::env::temp_dir().join(format!("obol-dispute-timers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = Node::open(SqliteStore::open(&dir).unwrap(), 7).unwrap();
    let engine = Engine::start(node);
    let vault = obol_app::vault::Vault::new(&obol_app::vault::Secret::new([5u8; 32]));
    let passkeys = obol_app::passkeys::Passkeys::new("localhost", "http://localhost").unwrap();
    let clock = Arc::new(Clock(AtomicU64::new(START_NS)));
    let app = App::new(engine.clone(), vault, passkeys).with_env(clock.clone());
    let asset = Asset::parse(code, 2).unwrap();
    let principal =
        |id: u128, role: Role| Op::Identity(IdentityCommand::CreatePrincipal { id, role, name: "-".into() });
    engine
        .execute_together(vec![
            principal(100, Role::Holder),
            principal(300, Role::Merchant),
            Op::CreateAccounts(vec![
                account(1, 100, asset, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
                account(2, 300, asset, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
                account(9, 0, asset, 0),
            ]),
            Op::CreateTransfers(vec![transfer(5, 9, 1, 10_000, asset)]),
        ])
        .await
        .unwrap();
    World {
        app,
        clock,
        asset,
        holder: caller(100, Role::Holder),
        merchant: caller(300, Role::Merchant),
        operator: caller(1, Role::Operator),
        _dir: dir,
    }
}

impl World {
    async fn pay(&self, id: u128, amount: u128) {
        let results =
            obol_app::transfers::pay(&self.app, &self.holder, vec![transfer(id, 1, 2, amount, self.asset)], None).await;
        assert_eq!(results.unwrap(), vec![obol_core::ledger::CreateTransferResult::Ok]);
    }

    async fn open(&self, id: &str, payment: &str, reason: &str) -> disputes::DisputeDto {
        let ask = OpenAsk { id, payment: Some(payment), tab: None, amount: None, reason, statement: "not mine" };
        disputes::open(&self.app, &self.holder, ask).await.unwrap().0
    }

    fn get(&self, id: &str) -> disputes::DisputeDto {
        disputes::get(&self.app, &self.operator, id).unwrap()
    }

    /// Moves the clock to the start of `day` (ISO) plus 12 h, and runs the sweep.
    async fn on(&self, day: &str) -> usize {
        let days = obol_rules::Day::parse(day).unwrap();
        self.clock.0.store(days.start_ns() + DAY_NS / 2, Ordering::SeqCst);
        disputes::sweep(&self.app).await.unwrap()
    }

    /// [payer, payee] posted balances (credits - debits), and the ledger's invariants.
    fn balances(&self) -> [u128; 2] {
        let ledger = obol_app::read_ledger(&self.app);
        ledger.check_invariants().unwrap();
        [1u128, 2].map(|id| {
            let b = ledger.account(id).unwrap().balances;
            b.credits_posted - b.debits_posted
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psd2_credits_an_unauthorised_payment_at_once_and_the_payee_missing_its_answer_loses() {
    let w = world("psd2", "EUR").await;
    w.pay(10, 700).await;
    let opened = w.open("1", "10", "unauthorised").await;
    assert_eq!(opened.regime, "psd2");
    assert!(opened.calendar.starts_with("eu-target2@"), "{}", opened.calendar);
    assert_eq!(opened.status, "open");
    assert!(opened.credited_at.is_some(), "refunded at once: {opened:?}");
    assert_eq!((opened.money.held.as_str(), opened.money.credited.as_str()), ("700", "700"));
    assert_eq!(w.balances(), [10_000, 0], "the payer has its money back while the dispute runs");
    // The payee's 5 business days: Mon 16 Nov + 5 = Mon 23 Nov. Nothing happens on the 23rd.
    assert_eq!(opened.deadlines.payee_answer_by, "2026-11-23");
    assert_eq!(w.on("2026-11-23").await, 0);
    assert_eq!(w.get("1").status, "open");
    // The day after, the payer wins: the credit stands, with the payer bearing nothing.
    assert_eq!(w.on("2026-11-24").await, 1);
    let done = w.get("1");
    assert_eq!((done.status.as_str(), done.outcome_reason.as_deref()), ("resolved_payer", Some("payee_missed_answer")));
    assert_eq!(done.liability.as_ref().unwrap().payer_bears, "0");
    assert_eq!(w.balances(), [10_000, 0]);
    // Too late to answer now.
    let late = disputes::answer(&w.app, &w.merchant, "1", "it was theirs", false).await;
    assert!(matches!(late, Err(obol_app::Error::DisputeClosed { .. })), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reg_e_credits_a_new_account_by_its_twentieth_business_day_and_an_investigation_past_90_days_goes_to_the_payer()
{
    // The accounts were opened (ledger time) less than 30 days before the notice: Reg E's new-
    // account periods apply (20 business days, 90 days).
    let w = world("rege", "USD").await;
    w.pay(10, 2_500).await;
    let opened = w.open("2", "10", "not_received").await;
    assert_eq!(opened.regime, "reg_e");
    assert!(opened.credited_at.is_none(), "Reg E owes no credit at once");
    assert_eq!(w.balances(), [7_500, 2_500]);
    // Thanksgiving (26 Nov) is closed: 20 business days from Mon 16 Nov end on Tue 15 Dec.
    assert_eq!(opened.deadlines.provisional_credit_by.as_deref(), Some("2026-12-15"));
    assert_eq!(opened.deadlines.resolve_by_extended, "2027-02-14");
    let answered = disputes::answer(&w.app, &w.merchant, "2", "shipped, tracking 1Z", false).await.unwrap();
    assert_eq!(answered.status, "under_review");
    // The payer disputing its own payment cannot decide it; nor can the payee.
    let decision = Decision { winner: "payer", payer_fraud: false, gross_negligence: false, learned_on: None };
    assert!(matches!(disputes::resolve(&w.app, &w.holder, "2", decision).await, Err(obol_app::Error::Forbidden(_))));
    assert!(matches!(disputes::resolve(&w.app, &w.merchant, "2", decision).await, Err(obol_app::Error::Forbidden(_))));
    assert_eq!(w.on("2026-12-14").await, 0, "business day 19: nothing due");
    assert_eq!(w.on("2026-12-15").await, 1, "business day 20: the provisional credit lands");
    let credited = w.get("2");
    assert_eq!((credited.status.as_str(), credited.money.credited.as_str()), ("under_review", "2500"));
    assert_eq!(w.balances(), [10_000, 0]);
    assert_eq!(w.on("2027-02-14").await, 0, "the 90th day: still the operator's to decide");
    assert_eq!(w.on("2027-02-15").await, 1);
    let done = w.get("2");
    assert_eq!(
        (done.status.as_str(), done.outcome_reason.as_deref()),
        ("resolved_payer", Some("investigation_deadline"))
    );
    assert_eq!(w.balances(), [10_000, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_win_takes_the_credit_back_and_a_withdrawal_releases_the_hold() {
    let w = world("payee", "EUR").await;
    w.pay(10, 400).await;
    w.pay(11, 300).await;
    w.open("3", "10", "unauthorised").await;
    assert_eq!(w.balances(), [9_700, 300], "payment 10 credited back at once");
    let decision = Decision { winner: "payee", payer_fraud: false, gross_negligence: false, learned_on: None };
    let done = disputes::resolve(&w.app, &w.operator, "3", decision).await.unwrap();
    assert_eq!((done.status.as_str(), done.money.taken_back.as_str()), ("resolved_payee", "400"));
    assert_eq!(w.balances(), [9_300, 700]);
    // A dispute on a payment not yet credited: withdrawing it releases the hold.
    let opened = w.open("4", "11", "not_as_described").await;
    assert_eq!(opened.money.held, "300");
    let withdrawn = disputes::withdraw(&w.app, &w.holder, "4").await.unwrap();
    assert_eq!((withdrawn.status.as_str(), withdrawn.money.released), ("withdrawn", true));
    assert_eq!(w.balances(), [9_300, 700]);
    let ledger = obol_app::read_ledger(&w.app);
    assert_eq!(ledger.account(2).unwrap().balances.debits_pending, 0, "no hold is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_payment_with_strong_authentication_costs_the_payer_its_psd2_share() {
    let w = world("share", "EUR").await;
    // 80.00 paid; the payer's share under art. 74 with strong authentication is at most 50.00:
    // without it, nothing. The holder's API key approved nothing: no strong authentication.
    w.pay(10, 8_000).await;
    w.open("5", "10", "unauthorised").await;
    let decision = Decision { winner: "payer", payer_fraud: false, gross_negligence: false, learned_on: None };
    let done = disputes::resolve(&w.app, &w.operator, "5", decision).await.unwrap();
    let liability = done.liability.unwrap();
    assert_eq!((liability.payer_bears.as_str(), liability.reasons[0].as_str()), ("0", "no_strong_authentication"));
    assert_eq!(w.balances(), [10_000, 0]);
    // A fraudulent payer bears it all: what it was credited goes back to the payee.
    w.pay(11, 600).await;
    w.open("6", "11", "unauthorised").await;
    let fraud = Decision { winner: "payer", payer_fraud: true, gross_negligence: false, learned_on: None };
    let done = disputes::resolve(&w.app, &w.operator, "6", fraud).await.unwrap();
    assert_eq!(done.liability.unwrap().payer_bears, "600");
    assert_eq!((done.returned.as_deref(), done.money.taken_back.as_str()), (Some("0"), "600"));
    assert_eq!(w.balances(), [9_400, 600]);
}
