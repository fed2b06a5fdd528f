//! The routes this server prices with HTTP 402 and what each has earned: a priced route
//! registers here when it is built, and counts every request it served paid.
//!
//! The counts are in memory and start again at zero when the server does: they are for people to
//! look at (which route earns what), never what money goes by. The money itself is in the
//! ledger and the tabs, durable before the paid answer is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use obol_core::money::Asset;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::authz::{need_scope, owns, sees_everything};
use crate::error::Error;
use crate::{App, read_ledger};
use obol_core::identity::Scopes;

/// Routes a server lists; past it, a route still takes payments but is not listed (a server
/// that builds priced routes per request would otherwise grow without end).
pub const ROUTES_MAX: usize = 1_024;
/// Paths counted apart per route (a route may be a pattern, `/files/{name}`); past it, further
/// paths are counted together under [`OTHER_PATHS`].
pub const PATHS_PER_ROUTE_MAX: usize = 256;
/// The path under which a route counts its paths past [`PATHS_PER_ROUTE_MAX`].
pub const OTHER_PATHS: &str = "(other paths)";

/// What a route asks, as it was priced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// What the resource is.
    pub description: String,
    /// Minor units per request.
    pub amount: u128,
    /// The asset.
    pub asset: Asset,
    /// The account paid.
    pub pay_to: u128,
    /// Schemes offered, in order of preference.
    pub schemes: Vec<String>,
}

/// Paid requests and what they brought, for one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Earned {
    requests_paid: u64,
    earned: u128,
}

/// One priced route: its terms and its earnings per path since it was priced.
#[derive(Debug)]
pub struct PricedRoute {
    terms: Terms,
    priced_ns: u64,
    paths: Mutex<HashMap<String, Earned>>,
}

impl PricedRoute {
    /// A route priced at `terms`, counting from `now_ns`.
    pub fn new(terms: Terms, now_ns: u64) -> PricedRoute {
        PricedRoute { terms, priced_ns: now_ns, paths: Mutex::new(HashMap::new()) }
    }

    /// Counts one request to `path` that paid `amount` (what the payment added: a voucher may add
    /// more than the price).
    pub fn record(&self, path: &str, amount: u128) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        // The common case, a path already counted, allocates nothing.
        let key = if paths.contains_key(path) || paths.len() < PATHS_PER_ROUTE_MAX { path } else { OTHER_PATHS };
        let earned = match paths.get_mut(key) {
            Some(earned) => earned,
            None => paths.entry(key.to_owned()).or_default(),
        };
        earned.requests_paid = earned.requests_paid.saturating_add(1);
        earned.earned = earned.earned.saturating_add(amount);
    }

    fn dto(&self) -> PricedRouteDto {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_path: Vec<PathEarningsDto> = paths
            .iter()
            .map(|(path, earned)| PathEarningsDto {
                path: path.clone(),
                requests_paid: earned.requests_paid,
                earned: earned.earned.to_string(),
            })
            .collect();
        by_path.sort_by(|a, b| a.path.cmp(&b.path));
        let requests_paid = paths.values().fold(0u64, |sum, e| sum.saturating_add(e.requests_paid));
        let earned = paths.values().fold(0u128, |sum, e| sum.saturating_add(e.earned));
        PricedRouteDto {
            description: self.terms.description.clone(),
            price: self.terms.amount.to_string(),
            asset_code: self.terms.asset.code().to_string(),
            asset_scale: self.terms.asset.scale(),
            pay_to: self.terms.pay_to.to_string(),
            schemes: self.terms.schemes.clone(),
            counted_since: obol_core::time::rfc3339(u128::from(self.priced_ns)),
            requests_paid,
            earned: earned.to_string(),
            paths: by_path,
        }
    }
}

/// Every route priced on this server (see [`App::priced_routes`]).
#[derive(Default, Debug)]
pub struct PricedRoutes {
    routes: Mutex<Vec<Arc<PricedRoute>>>,
}

impl PricedRoutes {
    /// The route for `terms`: the one already priced with the same terms (two layers with one
    /// price count together), else a new one, listed while there are fewer than [`ROUTES_MAX`].
    pub fn register(&self, terms: Terms, now_ns: u64) -> Arc<PricedRoute> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(route) = routes.iter().find(|route| route.terms == terms) {
            return Arc::clone(route);
        }
        let route = Arc::new(PricedRoute::new(terms, now_ns));
        if routes.len() < ROUTES_MAX {
            routes.push(Arc::clone(&route));
        }
        route
    }

    fn all(&self) -> Vec<Arc<PricedRoute>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What one path of a priced route earned.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PathEarningsDto {
    /// The request path (or `(other paths)`).
    pub path: String,
    /// Requests served paid.
    pub requests_paid: u64,
    /// What they paid, minor units of the route's asset.
    pub earned: String,
}

/// A priced route, its terms and what it earned since `counted_since`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PricedRouteDto {
    /// What the resource is.
    pub description: String,
    /// Minor units per request.
    pub price: String,
    /// The asset's code.
    pub asset_code: String,
    /// The asset's scale.
    pub asset_scale: u8,
    /// The account paid.
    pub pay_to: String,
    /// Schemes offered, in order of preference.
    pub schemes: Vec<String>,
    /// When counting began (the server's start, or when the route was priced), RFC 3339: the
    /// counts are kept in memory.
    pub counted_since: String,
    /// Requests served paid since then.
    pub requests_paid: u64,
    /// What they paid, minor units.
    pub earned: String,
    /// The same per request path, by path.
    pub paths: Vec<PathEarningsDto>,
}

/// The priced routes a caller may see.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PricedRoutesDto {
    /// In the order they were priced.
    pub routes: Vec<PricedRouteDto>,
}

/// The priced routes that pay the caller's accounts (staff see every one).
pub fn list(state: &App, caller: &Caller) -> Result<PricedRoutesDto, Error> {
    need_scope(caller, Scopes::READ)?;
    let routes = state.priced_routes.all();
    let ledger = read_ledger(state);
    let visible = |route: &PricedRoute| {
        sees_everything(caller) || ledger.account(route.terms.pay_to).is_some_and(|account| owns(caller, account))
    };
    Ok(PricedRoutesDto { routes: routes.iter().filter(|route| visible(route)).map(|route| route.dto()).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(amount: u128) -> Terms {
        let asset = Asset::new("USD", 9).unwrap_or_else(|e| panic!("{e}"));
        Terms { description: "an article".into(), amount, asset, pay_to: 7, schemes: vec!["exact".into()] }
    }

    #[test]
    fn paid_requests_are_counted_per_path_and_summed_per_route() {
        let routes = PricedRoutes::default();
        let route = routes.register(terms(400), 1);
        route.record("/a", 400);
        route.record("/a", 1_000);
        route.record("/b", 400);
        let dto = route.dto();
        assert_eq!(dto.requests_paid, 3);
        assert_eq!(dto.earned, "1800");
        let paths: Vec<(&str, u64, &str)> =
            dto.paths.iter().map(|p| (p.path.as_str(), p.requests_paid, p.earned.as_str())).collect();
        assert_eq!(paths, [("/a", 2, "1400"), ("/b", 1, "400")]);
    }

    #[test]
    fn the_same_terms_count_together_and_other_terms_apart() {
        let routes = PricedRoutes::default();
        let first = routes.register(terms(400), 1);
        let again = routes.register(terms(400), 2);
        let other = routes.register(terms(500), 3);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(routes.all().len(), 2);
    }

    #[test]
    fn paths_past_the_bound_are_counted_together() {
        let route = PricedRoute::new(terms(1), 0);
        for n in 0..PATHS_PER_ROUTE_MAX + 10 {
            route.record(&format!("/files/{n}"), 1);
        }
        let dto = route.dto();
        assert_eq!(dto.paths.len(), PATHS_PER_ROUTE_MAX + 1);
        assert_eq!(dto.requests_paid, (PATHS_PER_ROUTE_MAX + 10) as u64);
        let other = dto.paths.iter().find(|p| p.path == OTHER_PATHS).map(|p| p.requests_paid);
        assert_eq!(other, Some(10));
    }

    #[test]
    fn routes_past_the_bound_take_payments_unlisted() {
        let routes = PricedRoutes::default();
        for amount in 0..ROUTES_MAX as u128 + 3 {
            routes.register(terms(amount), 0).record("/x", 1);
        }
        assert_eq!(routes.all().len(), ROUTES_MAX);
    }
}
