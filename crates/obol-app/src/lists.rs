//! Lists: accounts, transfers, tabs and principals a caller may see, filtered, in a stable order
//! (the order they were made: the ledger's timestamps, opening order for tabs, creation time then
//! id for principals), a page at a time.
//!
//! A cursor is the position after the last entry *examined*, not the last one returned: a page
//! looks at no more than [`EXAMINED_MAX`] entries, so a filter that matches rarely answers a short
//! (even empty) page with a cursor to go on from instead of scanning the whole ledger under its
//! read lock. Paging until `next` is `None` visits every matching entry exactly once, whatever is
//! appended meanwhile.

use obol_core::channel::TabEntry;
use obol_core::identity::{Principal, Role, Scopes, Status};
use obol_core::ledger::{Account, HistoryEntry, PendingStatus, Transfer, TransferFlags};
use obol_core::money::Asset;

use crate::authz::{can_see_account, can_see_transfer, need_role, need_scope, sees_everything};
use crate::tabs::may_see;
use crate::{App, Error};

/// Most entries one page returns.
pub const LIMIT_MAX: usize = 1000;

/// Most entries one page looks at (matching or not).
pub const EXAMINED_MAX: usize = 100_000;

/// A page: the entries and where the next page starts (`None`: nothing more).
#[derive(Debug)]
pub struct Page<T> {
    /// The entries, in the list's order.
    pub items: Vec<T>,
    /// Cursor of the next page.
    pub next: Option<String>,
}

/// Reads a page size: 1 to [`LIMIT_MAX`], 100 when absent.
pub fn limit(limit: Option<usize>) -> Result<usize, Error> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=LIMIT_MAX).contains(&n) => Ok(n),
        Some(_) => Err(Error::InvalidQuery(format!("limit must be 1 to {LIMIT_MAX}"))),
    }
}

/// Reads a cursor from a previous page: a decimal position (an id, for principals).
fn cursor_id(after: Option<&str>) -> Result<u128, Error> {
    let bad = || Error::InvalidQuery("after must be a cursor from a previous page".into());
    match after {
        None => Ok(0),
        Some(text) if !text.is_empty() && text.len() <= 39 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

/// Reads a cursor that is a timestamp or a position.
fn cursor(after: Option<&str>) -> Result<u64, Error> {
    u64::try_from(cursor_id(after)?)
        .map_err(|_| Error::InvalidQuery("after must be a cursor from a previous page".into()))
}

/// Takes up to `limit` matches from `entries` (each with its position), examining at most
/// [`EXAMINED_MAX`]; the cursor is the last position examined when more may follow.
fn page<T, I>(entries: I, limit: usize, mut keep: impl FnMut(&T) -> bool) -> Page<T>
where
    I: Iterator<Item = (u64, T)>,
{
    let mut items = Vec::new();
    let mut last = None;
    let mut entries = entries.peekable();
    let mut examined = 0usize;
    for (position, entry) in entries.by_ref() {
        examined += 1;
        last = Some(position);
        if keep(&entry) {
            items.push(entry);
        }
        if items.len() == limit || examined == EXAMINED_MAX {
            break;
        }
    }
    let more = entries.peek().is_some();
    Page { items, next: if more { last.map(|p| p.to_string()) } else { None } }
}

/// Which accounts to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountFilter {
    /// Only this owner's (holders and merchants may name only themselves).
    pub owner: Option<u128>,
    /// Only in this asset.
    pub asset: Option<Asset>,
}

/// The accounts the caller may see, oldest first.
pub fn accounts(
    state: &App,
    caller: &crate::auth::Caller,
    filter: AccountFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<Account>, Error> {
    need_scope(caller, Scopes::READ)?;
    if let Some(owner) = filter.owner
        && !sees_everything(caller)
        && owner != caller.principal_id
    {
        return Err(Error::Forbidden("only the operator, analysts and auditors list others' accounts".into()));
    }
    let after = cursor(after)?;
    let ledger = crate::read_ledger(state);
    let all = ledger.accounts();
    let start = all.partition_point(|account| account.timestamp <= after);
    let entries = all.iter().skip(start).map(|account| (account.timestamp, *account));
    Ok(page(entries, limit, |account| {
        can_see_account(caller, account)
            && filter.owner.is_none_or(|owner| account.owner_id == owner)
            && filter.asset.is_none_or(|asset| account.asset == asset)
    }))
}

/// Where a transfer stands, as lists filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferState {
    /// Moved money at once (a single-phase transfer, or the post of a pending one).
    Posted,
    /// A reservation still held.
    Pending,
    /// A reservation later posted.
    PendingPosted,
    /// A reservation voided (or the void itself).
    Voided,
    /// A reservation that expired.
    Expired,
}

impl TransferState {
    /// Reads a wire name.
    pub fn parse(name: &str) -> Option<TransferState> {
        Some(match name {
            "posted" => TransferState::Posted,
            "pending" => TransferState::Pending,
            "pending_posted" => TransferState::PendingPosted,
            "voided" => TransferState::Voided,
            "expired" => TransferState::Expired,
            _ => return None,
        })
    }

    /// The state of `transfer`, given its pending status if it reserved.
    pub fn of(transfer: &Transfer, pending: Option<PendingStatus>) -> TransferState {
        if transfer.flags.has(TransferFlags::VOID_PENDING) {
            return TransferState::Voided;
        }
        match pending {
            Some(PendingStatus::Pending) => TransferState::Pending,
            Some(PendingStatus::Posted) => TransferState::PendingPosted,
            Some(PendingStatus::Voided) => TransferState::Voided,
            Some(PendingStatus::Expired) => TransferState::Expired,
            None => TransferState::Posted,
        }
    }
}

/// Which transfers to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransferFilter {
    /// Only those touching this account (its history, with the balances after each).
    pub account: Option<u128>,
    /// Only those made at or after this time (ns since the epoch).
    pub from_ns: Option<u64>,
    /// Only those made before this time.
    pub to_ns: Option<u64>,
    /// Only in this state.
    pub state: Option<TransferState>,
    /// Only of at least this amount.
    pub amount_min: Option<u128>,
    /// Only of at most this amount.
    pub amount_max: Option<u128>,
    /// Newest first (the cursor then says where the previous, newer page stopped).
    pub newest_first: bool,
}

/// A listed transfer: the transfer, its state, and (in an account's list) that account's
/// balances after it.
#[derive(Clone, Copy, Debug)]
pub struct Listed {
    /// The transfer.
    pub entry: HistoryEntry,
    /// Where it stands.
    pub state: TransferState,
}

/// The transfers the caller may see, oldest first.
pub fn transfers(
    state: &App,
    caller: &crate::auth::Caller,
    filter: TransferFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<Listed>, Error> {
    need_scope(caller, Scopes::READ)?;
    if let (Some(from), Some(to)) = (filter.from_ns, filter.to_ns)
        && from >= to
    {
        return Err(Error::InvalidQuery("from must be before to".into()));
    }
    if let (Some(min), Some(max)) = (filter.amount_min, filter.amount_max)
        && min > max
    {
        return Err(Error::InvalidQuery("amount_min must not exceed amount_max".into()));
    }
    // Time filters move the start and the end instead of being checked one by one. Newest first,
    // the cursor is where the previous page stopped, so the next page starts before it.
    let cursor = cursor(after)?;
    let from = filter.from_ns.unwrap_or(0);
    let to = filter.to_ns.unwrap_or(u64::MAX);
    let (after, before) = if filter.newest_first {
        (from.saturating_sub(1), if cursor == 0 { to } else { to.min(cursor) })
    } else {
        (cursor.max(from.saturating_sub(1)), to)
    };
    let ledger = crate::read_ledger(state);
    let keep = |listed: &Listed| {
        let transfer = &listed.entry.transfer;
        filter.state.is_none_or(|wanted| listed.state == wanted)
            && filter.amount_min.is_none_or(|min| transfer.amount >= min)
            && filter.amount_max.is_none_or(|max| transfer.amount <= max)
    };
    let listed = |entry: HistoryEntry| Listed {
        state: TransferState::of(&entry.transfer, ledger.pending_status(entry.transfer.id)),
        entry,
    };
    let page = match filter.account {
        Some(account_id) => {
            crate::transfers::visible_account(caller, &ledger, account_id)?;
            let positioned = |entry: HistoryEntry| (entry.transfer.timestamp, listed(entry));
            if filter.newest_first {
                let history =
                    ledger.account_history_before(account_id, before).ok_or(Error::AccountNotFound(account_id))?;
                page(history.take_while(|entry| entry.transfer.timestamp > after).map(positioned), limit, keep)
            } else {
                let history =
                    ledger.account_history_from(account_id, after).ok_or(Error::AccountNotFound(account_id))?;
                page(history.take_while(|entry| entry.transfer.timestamp < before).map(positioned), limit, keep)
            }
        }
        None => {
            let all = ledger.transfers();
            let positioned = |transfer: &Transfer| {
                (transfer.timestamp, listed(HistoryEntry { transfer: *transfer, balances: None }))
            };
            let visible = |entry: &Listed| can_see_transfer(caller, &ledger, &entry.entry.transfer) && keep(entry);
            let start = all.partition_point(|transfer| transfer.timestamp <= after);
            let end = all.partition_point(|transfer| transfer.timestamp < before);
            let window = all.get(start..end.max(start)).unwrap_or_default();
            if filter.newest_first {
                page(window.iter().rev().map(positioned), limit, visible)
            } else {
                page(window.iter().map(positioned), limit, visible)
            }
        }
    };
    Ok(page)
}

/// Where a tab stands, as lists filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TabState {
    /// Takes payments.
    Open,
    /// Past its expiry, settled on the next sweep.
    Expired,
    /// Settled and closed.
    Settled,
}

impl TabState {
    /// Reads a wire name.
    pub fn parse(name: &str) -> Option<TabState> {
        match name {
            "open" => Some(TabState::Open),
            "expired" => Some(TabState::Expired),
            "settled" => Some(TabState::Settled),
            _ => None,
        }
    }

    /// Where `tab` stands at `now_ns`.
    pub fn of(tab: &obol_core::channel::Tab, now_ns: u64) -> TabState {
        if tab.closed {
            TabState::Settled
        } else if now_ns >= tab.expires_ns {
            TabState::Expired
        } else {
            TabState::Open
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TabState::Open => "open",
            TabState::Expired => "expired",
            TabState::Settled => "settled",
        }
    }
}

/// Which tabs to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct TabFilter {
    /// Only those paid from this account.
    pub payer: Option<u128>,
    /// Only those paying this account.
    pub payee: Option<u128>,
    /// Only open, expired or settled ones.
    pub state: Option<TabState>,
}

/// The tabs the caller may see (as payer, payee, or a role that sees everything), in the order
/// they opened.
pub fn tabs(
    state: &App,
    caller: &crate::auth::Caller,
    filter: TabFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<TabEntry>, Error> {
    need_scope(caller, Scopes::READ)?;
    let after = usize::try_from(cursor(after)?).unwrap_or(usize::MAX);
    let now_ns = state.env.now_ns();
    let ledger = crate::read_ledger(state);
    // Positions count from 1, so that 0 is "from the start". Only the tabs kept are cloned.
    let entries = ledger.tabs().iter().enumerate().skip(after).map(|(index, entry)| (index as u64 + 1, entry));
    let page = page(entries, limit, |entry| {
        let tab = &entry.tab;
        may_see(caller, &ledger, entry)
            && filter.payee.is_none_or(|payee| tab.payee_id == payee)
            && filter.payer.is_none_or(|payer| ledger.tab_payer(tab) == Some(payer))
            && filter.state.is_none_or(|wanted| TabState::of(tab, now_ns) == wanted)
    });
    Ok(Page { items: page.items.into_iter().cloned().collect(), next: page.next })
}

/// Which principals to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrincipalFilter {
    /// Only of this role.
    pub role: Option<Role>,
    /// Only active or only suspended ones.
    pub status: Option<Status>,
}

/// Reads a principals cursor: `CREATED_NS-ID` of the last principal of the previous page.
fn principal_cursor(after: Option<&str>) -> Result<(u64, u128), Error> {
    let Some(text) = after else { return Ok((0, 0)) };
    let bad = || Error::InvalidQuery("after must be a cursor from a previous page".into());
    let (created, id) = text.split_once('-').ok_or_else(bad)?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(created) || !digits(id) {
        return Err(bad());
    }
    Ok((created.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// Principals in the order they were created (the operator, analysts and auditors).
pub fn principals(
    state: &App,
    caller: &crate::auth::Caller,
    filter: PrincipalFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<Principal>, Error> {
    need_scope(caller, Scopes::READ)?;
    need_role(caller, &[Role::Operator, Role::Analyst, Role::Auditor])?;
    // By creation, not by id: ids are chosen by the operator or drawn at random, so a principal
    // created while someone pages could fall below an id cursor and never be listed.
    let after = principal_cursor(after)?;
    let ledger = crate::read_ledger(state);
    let matching: Vec<&Principal> = ledger
        .identity()
        .principals()
        .filter(|p| (p.created_ns, p.id) > after)
        .filter(|p| filter.role.is_none_or(|role| p.role == role))
        .filter(|p| filter.status.is_none_or(|status| p.status == status))
        .collect();
    Ok(page_by_creation(matching, |p| (p.created_ns, p.id), limit))
}

/// A page of entries ordered by (creation time, id), with the cursor `CREATED_NS-ID` of its
/// last entry when more follow.
fn page_by_creation<T: Clone>(mut matching: Vec<&T>, key: impl Fn(&T) -> (u64, u128), limit: usize) -> Page<T> {
    matching.sort_unstable_by_key(|item| key(item));
    let more = matching.len() > limit;
    matching.truncate(limit);
    let next = if more {
        matching.last().map(|item| {
            let (created_ns, id) = key(item);
            format!("{created_ns}-{id}")
        })
    } else {
        None
    };
    Page { items: matching.into_iter().cloned().collect(), next }
}

/// Which devices a list shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceFilter {
    /// Only this holder's.
    pub holder: Option<u128>,
    /// Only in this status.
    pub status: Option<Status>,
}

/// The devices `caller` may see, in the order they were registered (then by id), a page at a
/// time: every device for the operator, analysts and auditors; a holder's own for a holder.
pub fn devices(
    state: &App,
    caller: &crate::auth::Caller,
    filter: DeviceFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<obol_core::identity::Device>, Error> {
    need_scope(caller, Scopes::READ)?;
    let holder = match caller.role {
        Role::Operator | Role::Analyst | Role::Auditor => filter.holder,
        Role::Holder if filter.holder.is_none_or(|holder| holder == caller.principal_id) => Some(caller.principal_id),
        Role::Holder => return Err(Error::Forbidden("a holder lists its own devices only".into())),
        Role::Merchant => return Err(Error::Forbidden("merchants have no devices to list".into())),
    };
    let after = principal_cursor(after)?;
    let ledger = crate::read_ledger(state);
    let matching: Vec<&obol_core::identity::Device> = ledger
        .identity()
        .devices()
        .filter(|d| (d.created_ns, d.id) > after)
        .filter(|d| holder.is_none_or(|holder| d.holder_id == holder))
        .filter(|d| filter.status.is_none_or(|status| d.status == status))
        .collect();
    Ok(page_by_creation(matching, |d| (d.created_ns, d.id), limit))
}
