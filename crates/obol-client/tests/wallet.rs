//! Goal: a wallet pays priced routes transparently (vouchers into a tab it opens itself, PayWord
//! ticks once a chain is committed, or one-off `exact` transfers), never past the spend limits its
//! holder set, and what the payee collects at settlement is exactly what the wallet paid.
//! Method: a real obol server on loopback (embedded store, group commit) with a route priced by
//! `PaymentLayer`; the wallet talks to it over real HTTP, signing management calls with its
//! device key (RFC 9421).

use obol_client::{ClientError, Preference, SpendLimits, Wallet, WalletConfig, receipt};
use obol_core::identity::{IdentityCommand, Role};
use obol_core::ledger::{AccountFlags, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_http::x402::{PaymentLayer, Price};
use obol_store::{Engine, Node, SqliteStore};

const PRICE: u128 = 2_500;
const DEVICE_KEY: [u8; 32] = [31u8; 32];

struct Server {
    base: String,
    engine: Engine,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn usd() -> Asset {
    Asset::new("USD", 9).unwrap()
}

async fn server(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("obol-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut node = Node::open(SqliteStore::open(&dir).unwrap(), 5).unwrap();
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
    let public_key = ed25519_dalek::SigningKey::from_bytes(&DEVICE_KEY).verifying_key().to_bytes();
    let fund = NewTransfer {
        id: 1,
        debit_account_id: 3,
        credit_account_id: 1,
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
    let ops = vec![
        Op::Identity(IdentityCommand::CreatePrincipal { id: 50, role: Role::Holder, name: "Ada".into() }),
        Op::Identity(IdentityCommand::RegisterDevice {
            id: 9,
            holder_id: 50,
            kid: "phone".into(),
            public_key,
            limits: None,
        }),
        Op::CreateAccounts(vec![
            account(1, 50, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(2, 0, 0),
            account(3, 0, 0),
        ]),
        Op::CreateTransfers(vec![fund]),
    ];
    node.commit(&Record { now_ns: 1, ops }).unwrap();
    let engine = Engine::start(node);
    let state = obol_http::AppState::new(engine.clone(), "http").with_rate_limit(0, 0);
    let paid = PaymentLayer::new(state.clone(), Price::new(PRICE, usd(), 2, "a reading"));
    let router = obol_http::app(state).route("/reading", axum::routing::get(|| async { "21.5 C" }).layer(paid));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    Server { base, engine, dir }
}

fn wallet(server: &Server, limits: SpendLimits, preference: Preference) -> Wallet {
    Wallet::new(WalletConfig {
        server: server.base.clone(),
        device_key: DEVICE_KEY,
        kid: "phone".into(),
        device_id: 9,
        account_id: 1,
        asset: usd(),
        auto_tab_budget: 10_000,
        auto_tab_timeout_s: 600,
        limits,
        preference,
    })
    .unwrap()
}

fn balances(server: &Server, id: u128) -> (u128, u128) {
    let ledger = server.engine.ledger().read().unwrap();
    let account = ledger.account(id).unwrap();
    (account.balances.debits_posted, account.balances.credits_posted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_opens_a_tab_by_itself_and_pays_each_reading_with_a_voucher() {
    let server = server("vouchers").await;
    let wallet = wallet(&server, SpendLimits::default(), Preference::Tabs);
    let url = format!("{}/reading", server.base);
    for n in 1..=3u128 {
        let response = wallet.get(&url).await.unwrap();
        let paid = receipt(&response).expect("a receipt");
        assert_eq!(response.status(), 200);
        assert!(paid.success);
        assert_eq!(response.text().await.unwrap(), "21.5 C");
        assert_eq!(wallet.tab(2).unwrap().cumulative, n * PRICE);
    }
    assert_eq!(wallet.spent_today(), 3 * PRICE);
    let settled = wallet.settle(2).await.unwrap();
    assert_eq!(settled["cumulative"], "7500");
    assert_eq!(balances(&server, 2), (0, 3 * PRICE), "the payee collects exactly what was paid");
    assert_eq!(balances(&server, 1).0, 3 * PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payword_ticks_pay_once_a_chain_is_committed() {
    let server = server("ticks").await;
    let wallet = wallet(&server, SpendLimits::default(), Preference::Tabs);
    wallet.open_tab(2, 50_000, 600).await.unwrap();
    wallet.commit_payword(2, 20, 1_000).await.unwrap();
    let url = format!("{}/reading", server.base);
    for _ in 0..4 {
        let response = wallet.get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let tab = wallet.tab(2).unwrap();
    assert_eq!((tab.cumulative, tab.ticks_left), (4 * 3_000, Some(8)), "3 ticks of 1,000 cover each 2,500");
    let id = tab.id;
    let owed = server.engine.ledger().read().unwrap().tab(id).unwrap().tab.cumulative;
    assert_eq!(owed, 12_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_limits_stop_payments_before_anything_is_paid() {
    let server = server("limits").await;
    let url = format!("{}/reading", server.base);
    let cheap = wallet(&server, SpendLimits { per_request_max: PRICE - 1, ..SpendLimits::default() }, Preference::Tabs);
    assert!(matches!(cheap.get(&url).await, Err(ClientError::SpendLimit(_))));
    let daily = wallet(&server, SpendLimits { per_day_max: 2 * PRICE, ..SpendLimits::default() }, Preference::Tabs);
    assert_eq!(daily.get(&url).await.unwrap().status(), 200);
    assert_eq!(daily.get(&url).await.unwrap().status(), 200);
    let third = daily.get(&url).await;
    assert!(matches!(third, Err(ClientError::SpendLimit(ref why)) if why.contains("daily")), "{third:?}");
    assert_eq!(daily.tab(2).unwrap().cumulative, 2 * PRICE, "the refused payment was never signed");
    let small_tabs = wallet(&server, SpendLimits { per_tab_max: 1_000, ..SpendLimits::default() }, Preference::Tabs);
    assert!(matches!(small_tabs.open_tab(2, 5_000, 60).await, Err(ClientError::SpendLimit(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_payments_are_single_ledger_transfers() {
    let server = server("exact").await;
    let wallet = wallet(&server, SpendLimits::default(), Preference::Exact);
    let url = format!("{}/reading", server.base);
    let response = wallet.get(&url).await.unwrap();
    let paid = receipt(&response).unwrap();
    assert!(paid.transaction.starts_with("transfer:"), "{paid:?}");
    assert_eq!(balances(&server, 2), (0, PRICE));
    assert!(wallet.tab(2).is_none(), "no tab was opened");
}
