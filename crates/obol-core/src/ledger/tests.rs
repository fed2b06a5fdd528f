//! Goal: pin the ledger's semantics one rule at a time.
//! Method: tiny cases through one `check` helper that applies a request and compares the result
//! codes as their stable wire names, then asserts balances and the global invariants.

use super::*;
use crate::money::Asset;
use crate::record::{Op, Record};

fn usd() -> Asset {
    Asset::new("USD", 2).unwrap()
}

fn eur() -> Asset {
    Asset::new("EUR", 2).unwrap()
}

fn account(id: u128, flags: u16) -> NewAccount {
    NewAccount {
        owner_id: 0,
        id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: usd(),
        code: 1,
        flags: AccountFlags(flags),
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> NewTransfer {
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
        asset: Some(usd()),
        code: 1,
        flags: TransferFlags(0),
    }
}

fn with_flags(mut event: NewTransfer, flags: u16) -> NewTransfer {
    event.flags = TransferFlags(flags);
    event
}

fn resolve(id: u128, pending_id: u128, amount: u128, flags: u16) -> NewTransfer {
    NewTransfer { pending_id, asset: None, code: 0, ..with_flags(transfer(id, 0, 0, amount), flags) }
}

struct Fixture {
    ledger: Ledger,
    now_ns: u64,
}

impl Fixture {
    /// A ledger with accounts 1..=3 (plain), 4 (debits_must_not_exceed_credits),
    /// 5 (credits_must_not_exceed_debits), 6 (history), 9 (EUR).
    fn new() -> Fixture {
        let mut fixture = Fixture { ledger: Ledger::new(7), now_ns: 1_000_000_000 };
        let mut eur_account = account(9, 0);
        eur_account.asset = eur();
        let accounts = vec![
            account(1, 0),
            account(2, 0),
            account(3, 0),
            account(4, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(5, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            account(6, AccountFlags::HISTORY),
            eur_account,
        ];
        assert_eq!(fixture.accounts(accounts), vec!["ok"; 7]);
        fixture
    }

    fn accounts(&mut self, events: Vec<NewAccount>) -> Vec<&'static str> {
        let replies = self.ledger.apply(&Record { now_ns: self.now_ns, ops: vec![Op::CreateAccounts(events)] });
        self.ledger.check_invariants().unwrap();
        match &replies[..] {
            [OpResults::Accounts(results)] => results.iter().map(|r| r.as_str()).collect(),
            other => panic!("unexpected replies {other:?}"),
        }
    }

    fn check(&mut self, events: Vec<NewTransfer>, expect: &[&str]) {
        let replies = self.ledger.apply(&Record { now_ns: self.now_ns, ops: vec![Op::CreateTransfers(events)] });
        self.ledger.check_invariants().unwrap();
        let got: Vec<&str> = match &replies[..] {
            [OpResults::Transfers(results)] => results.iter().map(|r| r.as_str()).collect(),
            other => panic!("unexpected replies {other:?}"),
        };
        assert_eq!(got, expect);
    }

    fn balances(&self, id: u128) -> [u128; 4] {
        let b = self.ledger.account(id).unwrap().balances;
        [b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted]
    }

    fn advance_s(&mut self, seconds: u64) {
        self.now_ns += seconds * NS_PER_S;
        self.ledger.apply(&Record { now_ns: self.now_ns, ops: vec![] });
        self.ledger.check_invariants().unwrap();
    }
}

#[test]
fn a_plain_transfer_moves_posted_balances() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, 250)], &["ok"]);
    assert_eq!(f.balances(1), [0, 250, 0, 0]);
    assert_eq!(f.balances(2), [0, 0, 0, 250]);
}

#[test]
fn reserved_ids_are_refused() {
    let mut f = Fixture::new();
    f.check(
        vec![
            transfer(0, 1, 2, 1),
            transfer(u128::MAX, 1, 2, 1),
            transfer(10, 0, 2, 1),
            transfer(11, u128::MAX, 2, 1),
            transfer(12, 1, 0, 1),
            transfer(13, 1, u128::MAX, 1),
            transfer(14, 1, 1, 1),
        ],
        &[
            "id_must_not_be_zero",
            "id_must_not_be_int_max",
            "debit_account_id_must_not_be_zero",
            "debit_account_id_must_not_be_int_max",
            "credit_account_id_must_not_be_zero",
            "credit_account_id_must_not_be_int_max",
            "accounts_must_be_different",
        ],
    );
    assert_eq!(f.ledger.transfers_count(), 0);
}

#[test]
fn unknown_accounts_and_asset_mismatches_are_refused() {
    let mut f = Fixture::new();
    let mut wrong_asset = transfer(13, 1, 2, 1);
    wrong_asset.asset = Some(eur());
    let mut no_asset = transfer(14, 1, 2, 1);
    no_asset.asset = None;
    f.check(
        vec![transfer(10, 77, 2, 1), transfer(11, 1, 77, 1), transfer(12, 1, 9, 1), wrong_asset, no_asset],
        &[
            "debit_account_not_found",
            "credit_account_not_found",
            "accounts_must_have_the_same_asset",
            "transfer_must_have_the_same_asset_as_accounts",
            "asset_must_be_set",
        ],
    );
}

#[test]
fn the_same_transfer_twice_exists_and_a_different_body_names_the_field() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, 5)], &["ok"]);
    let mut other_user_data = transfer(10, 1, 2, 5);
    other_user_data.user_data_64 = 3;
    let mut other_code = transfer(10, 1, 2, 5);
    other_code.code = 2;
    f.check(
        vec![
            transfer(10, 1, 2, 5),
            transfer(10, 3, 2, 5),
            transfer(10, 1, 3, 5),
            transfer(10, 1, 2, 6),
            with_flags(transfer(10, 1, 2, 5), TransferFlags::PENDING),
            other_user_data,
            other_code,
        ],
        &[
            "exists",
            "exists_with_different_debit_account_id",
            "exists_with_different_credit_account_id",
            "exists_with_different_amount",
            "exists_with_different_flags",
            "exists_with_different_user_data_64",
            "exists_with_different_code",
        ],
    );
    assert_eq!(f.balances(1), [0, 5, 0, 0]);
}

#[test]
fn accounts_are_idempotent_and_name_what_differs() {
    let mut f = Fixture::new();
    let mut other_asset = account(1, 0);
    other_asset.asset = eur();
    let mut other_code = account(1, 0);
    other_code.code = 2;
    assert_eq!(
        f.accounts(vec![
            account(1, 0),
            account(1, AccountFlags::HISTORY),
            other_asset,
            other_code,
            account(0, 0),
            account(u128::MAX, 0)
        ]),
        vec![
            "exists",
            "exists_with_different_flags",
            "exists_with_different_asset",
            "exists_with_different_code",
            "id_must_not_be_zero",
            "id_must_not_be_int_max"
        ]
    );
    assert_eq!(
        f.accounts(vec![
            account(20, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            account(21, 1 << 12)
        ]),
        vec!["flags_are_mutually_exclusive", "reserved_flag"]
    );
}

#[test]
fn debits_must_not_exceed_credits_holds_to_the_unit() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 4, 100)], &["ok"]);
    f.check(
        vec![transfer(11, 4, 2, 101), transfer(12, 4, 2, 100), transfer(13, 4, 2, 1)],
        &["exceeds_credits", "ok", "exceeds_credits"],
    );
}

#[test]
fn credits_must_not_exceed_debits_holds_to_the_unit() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 5, 1, 100)], &["ok"]);
    f.check(vec![transfer(11, 2, 5, 101), transfer(12, 2, 5, 100)], &["exceeds_debits", "ok"]);
}

#[test]
fn a_pending_transfer_reserves_then_posts_partially() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 4, 100)], &["ok"]);
    f.check(vec![with_flags(transfer(11, 4, 2, 60), TransferFlags::PENDING)], &["ok"]);
    assert_eq!(f.balances(4), [60, 0, 0, 100]);
    // Only 40 remains available while 60 is reserved.
    f.check(vec![transfer(12, 4, 2, 41)], &["exceeds_credits"]);
    f.check(
        vec![resolve(13, 11, 61, TransferFlags::POST_PENDING), resolve(14, 11, 45, TransferFlags::POST_PENDING)],
        &["exceeds_pending_transfer_amount", "ok"],
    );
    assert_eq!(f.balances(4), [0, 45, 0, 100]);
    assert_eq!(f.balances(2), [0, 0, 0, 45]);
    assert_eq!(f.ledger.transfer(14).unwrap().amount, 45);
    assert_eq!(f.ledger.pending_status(11), Some(PendingStatus::Posted));
    f.check(
        vec![
            resolve(15, 11, AMOUNT_MAX, TransferFlags::POST_PENDING),
            resolve(16, 11, 0, TransferFlags::VOID_PENDING),
            resolve(14, 11, 45, TransferFlags::POST_PENDING),
        ],
        &["pending_transfer_already_posted", "pending_transfer_already_posted", "exists"],
    );
}

#[test]
fn voiding_releases_the_whole_reservation() {
    let mut f = Fixture::new();
    f.check(vec![with_flags(transfer(10, 1, 2, 70), TransferFlags::PENDING)], &["ok"]);
    f.check(
        vec![resolve(11, 10, 69, TransferFlags::VOID_PENDING), resolve(12, 10, 0, TransferFlags::VOID_PENDING)],
        &["pending_transfer_has_different_amount", "ok"],
    );
    assert_eq!(f.balances(1), [0, 0, 0, 0]);
    f.check(vec![resolve(13, 10, AMOUNT_MAX, TransferFlags::POST_PENDING)], &["pending_transfer_already_voided"]);
}

#[test]
fn post_and_void_check_the_pending_transfer() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, 5), with_flags(transfer(11, 1, 2, 5), TransferFlags::PENDING)], &["ok", "ok"]);
    let mut wrong_debit = resolve(12, 11, 5, TransferFlags::POST_PENDING);
    wrong_debit.debit_account_id = 3;
    let mut wrong_code = resolve(13, 11, 5, TransferFlags::POST_PENDING);
    wrong_code.code = 9;
    let mut wrong_asset = resolve(14, 11, 5, TransferFlags::POST_PENDING);
    wrong_asset.asset = Some(eur());
    f.check(
        vec![
            resolve(15, 0, 5, TransferFlags::POST_PENDING),
            resolve(16, 16, 5, TransferFlags::POST_PENDING),
            resolve(17, 99, 5, TransferFlags::POST_PENDING),
            resolve(18, 10, 5, TransferFlags::POST_PENDING),
            wrong_debit,
            wrong_code,
            wrong_asset,
            resolve(19, 11, 5, TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING),
            resolve(20, 11, 5, TransferFlags::POST_PENDING | TransferFlags::BALANCING_DEBIT),
            with_flags(transfer(21, 1, 2, 5), TransferFlags::CLOSING_DEBIT),
            NewTransfer { timeout_s: 5, ..transfer(22, 1, 2, 5) },
            NewTransfer { pending_id: 11, ..transfer(23, 1, 2, 5) },
        ],
        &[
            "pending_id_must_not_be_zero",
            "pending_id_must_be_different",
            "pending_transfer_not_found",
            "pending_transfer_not_pending",
            "pending_transfer_has_different_debit_account_id",
            "pending_transfer_has_different_code",
            "pending_transfer_has_different_asset",
            "flags_are_mutually_exclusive",
            "flags_are_mutually_exclusive",
            "closing_transfer_must_be_pending",
            "timeout_reserved_for_pending_transfer",
            "pending_id_must_be_zero",
        ],
    );
}

#[test]
fn a_pending_transfer_expires_at_its_timeout_and_not_before() {
    let mut f = Fixture::new();
    f.check(vec![NewTransfer { timeout_s: 10, ..with_flags(transfer(10, 1, 2, 30), TransferFlags::PENDING) }], &["ok"]);
    assert_eq!(f.balances(1), [30, 0, 0, 0]);
    let expires_at = f.ledger.transfer(10).unwrap().timestamp + 10 * NS_PER_S;
    assert_eq!(f.ledger.next_expiry_ns(), Some(expires_at));
    f.now_ns = expires_at - 1;
    f.advance_s(0);
    assert_eq!(f.balances(1), [30, 0, 0, 0]);
    assert_eq!(f.ledger.pending_status(10), Some(PendingStatus::Pending));
    f.now_ns = expires_at;
    f.advance_s(0);
    assert_eq!(f.balances(1), [0, 0, 0, 0]);
    assert_eq!(f.ledger.pending_status(10), Some(PendingStatus::Expired));
    assert_eq!(f.ledger.next_expiry_ns(), None);
    f.check(vec![resolve(11, 10, AMOUNT_MAX, TransferFlags::POST_PENDING)], &["pending_transfer_expired"]);
}

#[test]
fn a_linked_chain_succeeds_or_fails_as_one() {
    let mut f = Fixture::new();
    let linked = TransferFlags::LINKED;
    f.check(
        vec![
            with_flags(transfer(10, 1, 2, 5), linked),
            with_flags(transfer(11, 2, 3, 5), linked),
            transfer(12, 3, 4, 5),
        ],
        &["ok", "ok", "ok"],
    );
    f.check(
        vec![
            with_flags(transfer(20, 1, 2, 5), linked),
            with_flags(transfer(21, 4, 3, 99), linked),
            transfer(22, 1, 3, 5),
            transfer(23, 1, 3, 5),
        ],
        &["linked_event_failed", "exceeds_credits", "linked_event_failed", "ok"],
    );
    assert!(f.ledger.transfer(20).is_none());
    assert!(f.ledger.transfer(22).is_none());
    assert_eq!(f.balances(1), [0, 10, 0, 0]);
    f.check(vec![transfer(30, 1, 2, 1), with_flags(transfer(31, 1, 2, 1), linked)], &["ok", "linked_event_chain_open"]);
    f.check(
        vec![with_flags(transfer(40, 1, 2, 1), linked), with_flags(transfer(41, 1, 2, 1), linked)],
        &["linked_event_failed", "linked_event_chain_open"],
    );
    assert!(f.ledger.transfer(40).is_none());
}

#[test]
fn a_failed_chain_rolls_back_pending_post_and_account_history() {
    let mut f = Fixture::new();
    f.check(vec![NewTransfer { timeout_s: 60, ..with_flags(transfer(10, 1, 6, 30), TransferFlags::PENDING) }], &["ok"]);
    let before = f.ledger.account_history(6, 0, 100).unwrap().len();
    f.check(
        vec![
            with_flags(
                resolve(11, 10, 30, TransferFlags::POST_PENDING),
                TransferFlags::POST_PENDING | TransferFlags::LINKED,
            ),
            with_flags(transfer(12, 1, 6, 1), TransferFlags::LINKED),
            transfer(13, 1, 77, 1),
        ],
        &["linked_event_failed", "linked_event_failed", "credit_account_not_found"],
    );
    assert_eq!(f.ledger.pending_status(10), Some(PendingStatus::Pending));
    assert_eq!(f.balances(6), [0, 0, 30, 0]);
    assert_eq!(f.ledger.account_history(6, 0, 100).unwrap().len(), before);
    assert!(f.ledger.next_expiry_ns().is_some());
}

#[test]
fn retrying_a_committed_chain_answers_exists_for_every_event() {
    let mut f = Fixture::new();
    let chain = vec![with_flags(transfer(10, 1, 2, 5), TransferFlags::LINKED), transfer(11, 2, 3, 5)];
    f.check(chain.clone(), &["ok", "ok"]);
    f.check(chain, &["exists", "exists"]);
    assert_eq!(f.balances(2), [0, 5, 0, 5]);
}

#[test]
fn balancing_debit_moves_only_what_the_account_holds() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 4, 70)], &["ok"]);
    f.check(vec![with_flags(transfer(11, 4, 2, AMOUNT_MAX), TransferFlags::BALANCING_DEBIT)], &["ok"]);
    assert_eq!(f.ledger.transfer(11).unwrap().amount, 70);
    assert_eq!(f.balances(4), [0, 70, 0, 70]);
    f.check(vec![with_flags(transfer(11, 4, 2, AMOUNT_MAX), TransferFlags::BALANCING_DEBIT)], &["exists"]);
    f.check(
        vec![with_flags(transfer(11, 4, 2, 69), TransferFlags::BALANCING_DEBIT)],
        &["exists_with_different_amount"],
    );
}

#[test]
fn balancing_credit_fills_only_up_to_debits() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 5, 1, 40)], &["ok"]);
    f.check(vec![with_flags(transfer(11, 2, 5, 100), TransferFlags::BALANCING_CREDIT)], &["ok"]);
    assert_eq!(f.ledger.transfer(11).unwrap().amount, 40);
}

#[test]
fn a_closing_transfer_closes_and_voiding_it_reopens() {
    let mut f = Fixture::new();
    f.check(vec![with_flags(transfer(10, 1, 2, 0), TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT)], &["ok"]);
    assert!(f.ledger.account(1).unwrap().flags.has(AccountFlags::CLOSED));
    f.check(
        vec![transfer(11, 1, 2, 1), transfer(12, 3, 1, 1)],
        &["debit_account_already_closed", "credit_account_already_closed"],
    );
    f.check(vec![resolve(13, 10, 0, TransferFlags::VOID_PENDING)], &["ok"]);
    assert!(!f.ledger.account(1).unwrap().flags.has(AccountFlags::CLOSED));
    f.check(vec![transfer(14, 1, 2, 1)], &["ok"]);
}

#[test]
fn overflow_is_refused_not_wrapped() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, u128::MAX)], &["ok"]);
    f.check(
        vec![transfer(11, 1, 3, 1), transfer(12, 3, 2, 1)],
        &["overflows_debits_posted", "overflows_credits_posted"],
    );
    f.check(vec![with_flags(transfer(13, 1, 3, 1), TransferFlags::PENDING)], &["overflows_debits"]);
    f.check(vec![with_flags(transfer(14, 3, 2, 1), TransferFlags::PENDING)], &["overflows_credits"]);
}

#[test]
fn r10_two_accounts_that_each_paid_the_largest_amount_still_check_and_replay() {
    // Found by the stateful fuzz target: the invariant check summed balances over accounts in
    // u128 and called such a ledger corrupt, so a restart refused to open it.
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, AMOUNT_MAX), transfer(11, 3, 2, 0)], &["ok", "ok"]);
    f.check(vec![transfer(12, 3, 1, AMOUNT_MAX)], &["ok"]);
    assert_eq!(f.ledger.check_invariants(), Ok(()));
    assert_eq!(f.balances(3), [0, AMOUNT_MAX, 0, 0]);
}

#[test]
fn timeouts_that_overflow_the_clock_are_refused() {
    let mut f = Fixture::new();
    f.now_ns = u64::MAX - 10 * NS_PER_S;
    f.check(
        vec![NewTransfer { timeout_s: u32::MAX, ..with_flags(transfer(10, 1, 2, 1), TransferFlags::PENDING) }],
        &["overflows_timeout"],
    );
}

#[test]
fn history_lists_transfers_with_balances_and_pages_by_timestamp() {
    let mut f = Fixture::new();
    for id in 10..15 {
        f.check(vec![transfer(id, 1, 6, 10)], &["ok"]);
    }
    let page = f.ledger.account_history(6, 0, 3).unwrap();
    assert_eq!(page.iter().map(|e| e.transfer.id).collect::<Vec<_>>(), vec![10, 11, 12]);
    assert_eq!(page[2].balances.unwrap().credits_posted, 30);
    let rest = f.ledger.account_history(6, page[2].transfer.timestamp, 3).unwrap();
    assert_eq!(rest.iter().map(|e| e.transfer.id).collect::<Vec<_>>(), vec![13, 14]);
    let plain = f.ledger.account_history(1, 0, 10).unwrap();
    assert_eq!(plain.len(), 5);
    assert!(plain[0].balances.is_none());
    assert!(f.ledger.account_history(77, 0, 10).is_none());
}

#[test]
fn timestamps_increase_strictly_even_if_the_clock_goes_back() {
    let mut f = Fixture::new();
    f.check(vec![transfer(10, 1, 2, 1)], &["ok"]);
    f.now_ns -= 500;
    f.check(vec![transfer(11, 1, 2, 1)], &["ok"]);
    assert!(f.ledger.transfer(11).unwrap().timestamp > f.ledger.transfer(10).unwrap().timestamp);
}

#[test]
fn every_result_code_round_trips_through_its_number() {
    for result in CreateTransferResult::ALL {
        assert_eq!(CreateTransferResult::from_code(result.code()), Some(*result));
    }
    for result in CreateAccountResult::ALL {
        assert_eq!(CreateAccountResult::from_code(result.code()), Some(*result));
    }
}

mod tabs {
    //! Tabs on the ledger: the escrow is a pending transfer, payments only move what the tab
    //! owes, and settlement posts exactly that and releases the rest.
    use super::*;
    use crate::channel::{TabCommand, TabResult, Voucher};
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[4u8; 32])
    }

    fn tab_op(f: &mut Fixture, command: TabCommand) -> TabResult {
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Tab(command)] });
        f.ledger.check_invariants().unwrap();
        match replies[..] {
            [OpResults::Tab(result)] => result,
            ref other => panic!("unexpected replies {other:?}"),
        }
    }

    /// A fixture where account 4 belongs to holder 50, whose device 9 signs with `key()`.
    fn fixture() -> Fixture {
        use crate::identity::{IdentityCommand, Role};
        let mut f = Fixture::new();
        let mut payer = account(40, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
        payer.owner_id = 50;
        let commands = [
            IdentityCommand::CreatePrincipal { id: 50, role: Role::Holder, name: "payer".into() },
            IdentityCommand::RegisterDevice {
                id: 9,
                holder_id: 50,
                kid: "meter".into(),
                public_key: key().verifying_key().to_bytes(),
                limits: None,
            },
        ];
        let ops = commands.into_iter().map(Op::Identity).chain([Op::CreateAccounts(vec![payer])]).collect();
        f.ledger.apply(&Record { now_ns: f.now_ns, ops });
        assert!(f.ledger.identity().device(9).is_some());
        f
    }

    fn open(tab_id: u128, payer: u128, budget: u128) -> TabCommand {
        TabCommand::Open {
            tab_id,
            escrow_transfer_id: 1000 + tab_id,
            payer_account_id: payer,
            payee_account_id: 2,
            device_id: 9,
            budget,
            asset: usd(),
            timeout_s: 60,
        }
    }

    fn voucher(tab_id: u128, cumulative: u128, seq: u64) -> TabCommand {
        let network = crate::channel::Network::named("obol:test");
        let signature = key().sign(&Voucher::signed_message(&network, tab_id, 2, cumulative, seq)).to_bytes();
        TabCommand::Voucher(Voucher { tab_id, payee_id: 2, cumulative, seq, signature })
    }

    #[test]
    fn a_tab_escrows_pays_and_settles_exactly_what_it_owes() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        assert_eq!(tab_op(&mut f, open(7, 40, 800)), TabResult::Ok { added: 0 });
        assert_eq!(f.balances(40), [800, 0, 0, 1_000]);
        assert_eq!(tab_op(&mut f, voucher(7, 300, 1)), TabResult::Ok { added: 300 });
        assert_eq!(tab_op(&mut f, voucher(7, 450, 2)), TabResult::Ok { added: 150 });
        assert_eq!(tab_op(&mut f, voucher(7, 300, 1)), TabResult::Rejected(crate::channel::PayReject::Stale));
        assert_eq!(tab_op(&mut f, voucher(7, 801, 3)), TabResult::Rejected(crate::channel::PayReject::BeyondEscrow));
        assert_eq!(f.balances(2), [0, 0, 800, 0], "nothing moves until settlement");
        assert_eq!(
            tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 }),
            TabResult::Ok { added: 0 }
        );
        assert_eq!(f.balances(40), [0, 450, 0, 1_000]);
        assert_eq!(f.balances(2), [0, 0, 0, 450]);
        assert_eq!(tab_op(&mut f, voucher(7, 500, 3)), TabResult::Rejected(crate::channel::PayReject::TabClosed));
        assert_eq!(tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 }), TabResult::Exists);
        assert_eq!(tab_op(&mut f, open(7, 40, 10)), TabResult::Exists);
        assert_eq!(tab_op(&mut f, voucher(8, 1, 1)), TabResult::NotFound);
    }

    #[test]
    fn a_tab_the_payer_cannot_fund_does_not_open() {
        let mut f = fixture();
        assert_eq!(tab_op(&mut f, open(7, 40, 1)), TabResult::Escrow(CreateTransferResult::ExceedsCredits));
        assert!(f.ledger.tab(7).is_none());
    }

    #[test]
    fn an_expired_tab_refuses_payments_but_still_settles() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        tab_op(&mut f, open(7, 40, 500));
        assert_eq!(tab_op(&mut f, voucher(7, 100, 1)), TabResult::Ok { added: 100 });
        f.advance_s(61);
        assert_eq!(tab_op(&mut f, voucher(7, 200, 2)), TabResult::Rejected(crate::channel::PayReject::TabExpired));
        assert_eq!(
            tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 }),
            TabResult::Ok { added: 0 }
        );
        assert_eq!(f.balances(2), [0, 0, 0, 100], "what was acknowledged is collected after expiry");
    }

    #[test]
    fn a_top_up_grows_the_escrow_atomically_and_settlement_posts_from_the_new_one() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        tab_op(&mut f, open(7, 40, 600));
        assert_eq!(tab_op(&mut f, voucher(7, 600, 1)), TabResult::Ok { added: 600 });
        assert_eq!(tab_op(&mut f, voucher(7, 700, 2)), TabResult::Rejected(crate::channel::PayReject::BeyondEscrow));
        let top_up = |amount, n: u128| TabCommand::TopUp {
            tab_id: 7,
            amount,
            void_transfer_id: 3000 + n,
            escrow_transfer_id: 4000 + n,
        };
        assert_eq!(
            tab_op(&mut f, top_up(401, 1)),
            TabResult::Escrow(CreateTransferResult::ExceedsCredits),
            "a top-up the payer cannot fund changes nothing"
        );
        assert_eq!(f.balances(40), [600, 0, 0, 1_000]);
        assert_eq!(f.ledger.tab(7).unwrap().tab.escrow_transfer_id, 1007);
        assert_eq!(tab_op(&mut f, top_up(400, 2)), TabResult::Ok { added: 0 });
        assert_eq!(f.balances(40), [1_000, 0, 0, 1_000], "one escrow of 1,000, the old one voided");
        assert_eq!(tab_op(&mut f, top_up(400, 2)), TabResult::Exists, "a retried top-up is applied once");
        assert_eq!(f.balances(40), [1_000, 0, 0, 1_000]);
        assert_eq!(tab_op(&mut f, voucher(7, 700, 2)), TabResult::Ok { added: 100 });
        tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 });
        assert_eq!(f.balances(40), [0, 700, 0, 1_000]);
        assert_eq!(f.balances(2), [0, 0, 0, 700]);
        assert_eq!(tab_op(&mut f, top_up(1, 3)), TabResult::Rejected(crate::channel::PayReject::TabClosed));
    }

    #[test]
    fn expired_tabs_are_due_and_their_escrow_is_never_released_by_a_timer() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        tab_op(&mut f, open(7, 40, 500));
        tab_op(&mut f, open(8, 40, 100));
        assert_eq!(tab_op(&mut f, voucher(7, 100, 1)), TabResult::Ok { added: 100 });
        assert!(f.ledger.tabs_due(f.now_ns, 10).is_empty());
        f.advance_s(30 * 24 * 3600);
        f.check(vec![], &[]);
        assert_eq!(f.balances(40), [600, 0, 0, 1_000], "the escrows are still held a month later");
        assert_eq!(f.ledger.tabs_due(f.now_ns, 10), vec![7, 8]);
        assert_eq!(f.ledger.tabs_due(f.now_ns, 1), vec![7]);
        tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 });
        assert_eq!(f.ledger.tabs_due(f.now_ns, 10), vec![8]);
        assert_eq!(f.balances(2), [0, 0, 100, 100], "tab 8 still holds its escrow");
    }

    #[test]
    fn a_revoked_device_pays_no_more_and_a_foreign_device_opens_nothing() {
        use crate::identity::{IdentityCommand, Status};
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        let mut stranger = open(9, 40, 100);
        if let TabCommand::Open { payer_account_id, .. } = &mut stranger {
            *payer_account_id = 1;
        }
        assert_eq!(tab_op(&mut f, stranger), TabResult::Rejected(crate::channel::PayReject::DeviceInactive));
        tab_op(&mut f, open(7, 40, 500));
        assert_eq!(tab_op(&mut f, voucher(7, 100, 1)), TabResult::Ok { added: 100 });
        let revoke = IdentityCommand::SetDeviceStatus { id: 9, status: Status::Revoked };
        f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Identity(revoke)] });
        assert_eq!(tab_op(&mut f, voucher(7, 200, 2)), TabResult::Rejected(crate::channel::PayReject::DeviceInactive));
        tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 });
        assert_eq!(f.balances(2), [0, 0, 0, 100], "what it paid before stays owed");
    }

    #[test]
    fn only_a_dispute_op_holds_posts_or_voids_with_the_dispute_code() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        f.check(vec![transfer(11, 40, 2, 300)], &["ok"]);
        // Nobody makes a dispute transfer through a request.
        let mut fake = transfer(20, 2, 40, 100);
        fake.code = DISPUTE_TRANSFER_CODE;
        f.check(vec![fake], &["code_reserved_for_disputes"]);
        // The dispute's hold on the payee's funds, by its own op.
        let mut hold = with_flags(transfer(21, 2, 40, 100), TransferFlags::PENDING);
        hold.code = DISPUTE_TRANSFER_CODE;
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Dispute(vec![hold])] });
        assert_eq!(replies, vec![OpResults::Transfers(vec![CreateTransferResult::Ok])]);
        // Neither side posts or voids it by a request.
        f.check(vec![resolve(22, 21, 100, TransferFlags::POST_PENDING)], &["pending_transfer_belongs_to_dispute"]);
        f.check(vec![resolve(23, 21, 0, TransferFlags::VOID_PENDING)], &["pending_transfer_belongs_to_dispute"]);
        assert_eq!(f.balances(2), [100, 0, 0, 300], "the hold stands");
        // A dispute op carries nothing but dispute transfers.
        let plain = transfer(24, 2, 40, 1);
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Dispute(vec![plain])] });
        assert_eq!(replies, vec![OpResults::Transfers(vec![CreateTransferResult::CodeReservedForDisputes])]);
        let mut credit = resolve(25, 21, 100, TransferFlags::POST_PENDING);
        credit.code = DISPUTE_TRANSFER_CODE;
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Dispute(vec![credit])] });
        assert_eq!(replies, vec![OpResults::Transfers(vec![CreateTransferResult::Ok])]);
        assert_eq!(f.balances(2), [0, 100, 0, 300], "the provisional credit is posted");
        f.ledger.check_invariants().unwrap();
    }

    #[test]
    fn r14_a_dispute_hold_posts_even_after_the_payee_closed_its_account() {
        // Found by the attack review: a payee that closed its account (a closing pending
        // transfer) made the post of a dispute's hold fail, stranding the payer's win.
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        f.check(vec![transfer(11, 40, 2, 300)], &["ok"]);
        let mut hold = with_flags(transfer(21, 2, 40, 100), TransferFlags::PENDING);
        hold.code = DISPUTE_TRANSFER_CODE;
        f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Dispute(vec![hold])] });
        f.check(
            vec![with_flags(transfer(30, 2, 3, 0), TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT)],
            &["ok"],
        );
        let mut post = resolve(25, 21, 100, TransferFlags::POST_PENDING);
        post.code = DISPUTE_TRANSFER_CODE;
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![Op::Dispute(vec![post])] });
        assert_eq!(replies, vec![OpResults::Transfers(vec![CreateTransferResult::Ok])]);
        assert_eq!(f.balances(40), [0, 300, 0, 1_100], "the payer has its win");
        f.ledger.check_invariants().unwrap();
    }

    #[test]
    fn r10_only_tab_commands_move_an_escrow() {
        use crate::channel::TAB_TRANSFER_CODE;
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        tab_op(&mut f, open(7, 40, 800));
        assert_eq!(tab_op(&mut f, voucher(7, 10, 1)), TabResult::Ok { added: 10 });
        let before = (f.balances(40), f.balances(2));
        // The payee posting the whole escrow, the payer voiding it, with or without the fields.
        f.check(vec![resolve(20, 1007, AMOUNT_MAX, TransferFlags::POST_PENDING)], &["pending_transfer_belongs_to_tab"]);
        f.check(vec![resolve(21, 1007, 0, TransferFlags::VOID_PENDING)], &["pending_transfer_belongs_to_tab"]);
        let mut full = resolve(22, 1007, 800, TransferFlags::POST_PENDING);
        full.debit_account_id = 40;
        full.credit_account_id = 2;
        full.code = TAB_TRANSFER_CODE;
        full.asset = Some(usd());
        f.check(vec![full], &["code_reserved_for_tabs"]);
        // Nor can anyone make a transfer that looks like a tab's.
        let mut fake = transfer(23, 1, 2, 5);
        fake.code = TAB_TRANSFER_CODE;
        f.check(vec![fake], &["code_reserved_for_tabs"]);
        assert_eq!((f.balances(40), f.balances(2)), before, "nothing moved");
        assert_eq!(
            tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 }),
            TabResult::Ok { added: 0 }
        );
        assert_eq!(f.balances(2), [0, 0, 0, 10], "the tab settles exactly what it was paid");
    }

    #[test]
    fn r10_a_tab_settles_even_after_an_account_was_closed() {
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 1_000)], &["ok"]);
        tab_op(&mut f, open(7, 40, 500));
        assert_eq!(tab_op(&mut f, voucher(7, 100, 1)), TabResult::Ok { added: 100 });
        // The payer closes its own account, then the payee's is closed too.
        f.check(
            vec![with_flags(transfer(30, 40, 3, 0), TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT)],
            &["ok"],
        );
        f.check(
            vec![with_flags(transfer(31, 1, 2, 0), TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT)],
            &["ok"],
        );
        assert_eq!(
            tab_op(&mut f, TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 }),
            TabResult::Ok { added: 0 }
        );
        assert_eq!(f.balances(2)[3], 100, "the payee got what it was paid");
        assert_eq!(f.balances(40), [0, 100, 0, 1_000], "the payer got the rest back");
        assert!(f.ledger.tabs_due(u64::MAX, 10).is_empty());
    }

    /// [`fixture`] with account 40 funded with 100.00 and device 9 limited to 5.00 a payment
    /// and 8.00 a day, in USD.
    fn funded_with_limits() -> Fixture {
        use crate::identity::{DeviceLimits, IdentityCommand};
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 10_000)], &["ok"]);
        let limits = Some(DeviceLimits { asset: usd(), per_payment: 500, per_day: 800 });
        f.ledger.apply(&Record {
            now_ns: f.now_ns,
            ops: vec![Op::Identity(IdentityCommand::SetDeviceLimits { id: 9, limits })],
        });
        f
    }

    #[test]
    fn r10_a_devices_limits_bound_what_its_tabs_escrow() {
        let mut f = funded_with_limits();
        let refused = TabResult::Rejected(crate::channel::PayReject::DeviceLimit);
        assert_eq!(tab_op(&mut f, open(7, 40, 501)), refused, "above one payment's limit");
        assert_eq!(tab_op(&mut f, open(7, 40, 500)), TabResult::Ok { added: 0 });
        let top_up = |amount, n: u128| TabCommand::TopUp {
            tab_id: 7,
            amount,
            void_transfer_id: 3000 + n,
            escrow_transfer_id: 4000 + n,
        };
        assert_eq!(tab_op(&mut f, top_up(301, 1)), refused, "beyond what is left of the day");
        assert_eq!(tab_op(&mut f, top_up(300, 2)), TabResult::Ok { added: 0 });
        assert_eq!(tab_op(&mut f, open(8, 40, 1)), refused, "the day is spent");
        assert_eq!(f.balances(40)[0], 800, "only what the limits allowed is escrowed");
        f.advance_s(24 * 3600);
        assert_eq!(tab_op(&mut f, open(8, 40, 1)), TabResult::Ok { added: 0 }, "a new day starts from zero");
        let mut euro = open(9, 40, 1);
        if let TabCommand::Open { asset, .. } = &mut euro {
            *asset = eur();
        }
        assert_eq!(tab_op(&mut f, euro), refused, "another asset than the limits'");
    }

    fn pay(f: &mut Fixture, device_id: u128, authenticated: bool, transfers: Vec<NewTransfer>) -> Vec<&'static str> {
        let op = Op::Pay(Payment { device_id, authenticated, transfers });
        let replies = f.ledger.apply(&Record { now_ns: f.now_ns, ops: vec![op] });
        f.ledger.check_invariants().unwrap();
        match &replies[..] {
            [OpResults::Transfers(results)] => results.iter().map(|r| r.as_str()).collect(),
            other => panic!("unexpected replies {other:?}"),
        }
    }

    #[test]
    fn a_payment_is_checked_charged_and_counted_in_one_apply_and_a_refused_one_counts_nothing() {
        use crate::identity::IdentityCommand;
        let mut f = funded_with_limits();
        let device = |f: &Fixture| {
            let d = f.ledger.identity().device(9).unwrap();
            (d.spent_today, d.has_paid)
        };
        assert_eq!(pay(&mut f, 9, false, vec![transfer(20, 40, 2, 501)]), ["device_limit_exceeded"]);
        assert_eq!(
            pay(&mut f, 9, false, vec![transfer(20, 40, 2, 400), transfer(21, 40, 2, 401)]),
            ["device_limit_exceeded", "device_limit_exceeded"]
        );
        assert_eq!(device(&f), (0, false), "a refused payment charges nothing");
        assert_eq!(f.ledger.payer_counters(40, f.now_ns), PayerCounters::default(), "and counts nothing");
        // One goes through and one fails in the ledger: only the one that went through counts.
        assert_eq!(
            pay(&mut f, 9, false, vec![transfer(20, 40, 2, 300), transfer(21, 40, 999, 100)]),
            ["ok", "credit_account_not_found"]
        );
        assert_eq!(device(&f), (300, true));
        let month = utc_month(f.now_ns);
        let counted = PayerCounters { sca_payments_since: 1, sca_amount_since: 300, month, month_total: 300 };
        assert_eq!(f.ledger.payer_counters(40, f.now_ns), counted);
        // A retry of the same transfer finds it made: it charges and counts nothing again, and
        // the limits do not refuse it for what it would have cost.
        assert_eq!(pay(&mut f, 9, false, vec![transfer(20, 40, 2, 300)]), ["exists"]);
        assert_eq!(pay(&mut f, 9, false, vec![transfer(30, 40, 2, 499)]), ["ok"]);
        assert_eq!(pay(&mut f, 9, false, vec![transfer(30, 40, 2, 499)]), ["exists"], "past the day, made already");
        assert_eq!(device(&f), (799, true));
        assert_eq!(pay(&mut f, 9, false, vec![transfer(31, 40, 2, 2)]), ["device_limit_exceeded"]);
        let counted = PayerCounters { sca_payments_since: 2, sca_amount_since: 799, month, month_total: 799 };
        assert_eq!(f.ledger.payer_counters(40, f.now_ns), counted);
        // What is left of the day bounds the next; strong authentication restarts the counts.
        assert_eq!(pay(&mut f, 9, true, vec![transfer(22, 40, 2, 2)]), ["device_limit_exceeded"]);
        assert_eq!(pay(&mut f, 9, true, vec![transfer(22, 40, 2, 1)]), ["ok"]);
        let after_sca = PayerCounters { sca_payments_since: 0, sca_amount_since: 0, month, month_total: 800 };
        assert_eq!(f.ledger.payer_counters(40, f.now_ns), after_sca);
        assert_eq!(pay(&mut f, 9, false, vec![transfer(23, 40, 2, 1)]), ["device_limit_exceeded"], "the day is spent");
        // An API key's payment (no device) is counted too; a tab's escrow counts as a payment.
        assert_eq!(pay(&mut f, 0, false, vec![transfer(24, 40, 2, 5_000)]), ["ok"]);
        f.advance_s(24 * 3600);
        assert_eq!(tab_op(&mut f, open(7, 40, 200)), TabResult::Ok { added: 0 });
        let counters = f.ledger.payer_counters(40, f.now_ns);
        assert_eq!((counters.sca_payments_since, counters.sca_amount_since), (2, 5_200));
        // A revoked device pays nothing.
        f.ledger.apply(&Record {
            now_ns: f.now_ns,
            ops: vec![Op::Identity(IdentityCommand::SetDeviceStatus {
                id: 9,
                status: crate::identity::Status::Revoked,
            })],
        });
        assert_eq!(pay(&mut f, 9, false, vec![transfer(25, 40, 2, 1)]), ["device_limit_exceeded"]);
        // Replaying the same records gives the same counters.
        let record = Record { now_ns: f.now_ns, ops: vec![] };
        f.ledger.apply(&record);
        assert_eq!(f.ledger.payer_counters(40, f.now_ns), counters);
    }

    #[test]
    fn plain_transfers_from_an_owned_account_count_as_payments_and_others_do_not() {
        // Logs written before Op::Pay hold a holder's payments as plain transfers: replaying
        // them recounts what was paid since strong authentication and this month.
        let mut f = fixture();
        f.check(vec![transfer(10, 1, 40, 10_000)], &["ok"]);
        assert_eq!(f.ledger.payer_counters(1, f.now_ns), PayerCounters::default(), "account 1 has no owner");
        f.check(vec![transfer(11, 40, 2, 900), transfer(12, 40, 999, 5)], &["ok", "credit_account_not_found"]);
        let counters = f.ledger.payer_counters(40, f.now_ns);
        assert_eq!((counters.sca_payments_since, counters.sca_amount_since, counters.month_total), (1, 900, 900));
    }

    #[test]
    fn tab_commands_round_trip_through_the_record_codec() {
        let commands = vec![
            open(7, 40, 800),
            voucher(7, 300, 1),
            TabCommand::Tick { tab_id: 7, index: 3, word: [9; 32] },
            TabCommand::TopUp { tab_id: 7, amount: 5, void_transfer_id: 8, escrow_transfer_id: 9 },
            TabCommand::Settle { tab_id: 7, settle_transfer_id: 2007 },
        ];
        for command in commands {
            let record = Record { now_ns: 5, ops: vec![Op::Tab(command)] };
            assert_eq!(Record::decode(&record.encode().unwrap()), Ok(record));
        }
    }
}
