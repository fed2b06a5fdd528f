//! The legal timers of a dispute, per jurisdiction, on the business-day calendar in force on the
//! day the dispute was raised.
//!
//! - **US Regulation E** (12 CFR 1005.11): notice within 60 days of the periodic statement that
//!   first showed the payment (day 61 is outside); investigate within 10 business days of the
//!   notice (20 for an account opened less than 30 days before), or within 45 calendar days (90
//!   for a new account, a point-of-sale or a foreign payment) if the consumer is provisionally
//!   credited within those 10 (20) business days; report within 3 business days of completing.
//! - **EU PSD2**: notice within 13 months of the debit (art. 71); an unauthorised payment is
//!   refunded at once and at the latest by the end of the next business day (art. 73); a complaint
//!   is answered within 15 business days (art. 101; 35 in exceptional cases).
//! - **Korea** (Electronic Financial Transactions Act art. 22 and its decree; ⚠ secondary
//!   figures): a payment can be disputed while its records are kept (5 years; 1 year for KRW
//!   10,000 or less), and the result is given within 15 days.
//!
//! Obol's own rule on top: the payee answers within 5 business days of the notice; a payee that
//! misses it loses the dispute (the timer sweep resolves it for the payer).

use crate::calendar::{Calendar, Day};

/// Which law's timers apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// US Regulation E.
    RegE,
    /// EU PSD2.
    Psd2,
    /// Korea's Electronic Financial Transactions Act.
    Korea,
}

/// What the payer claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The payer did not authorise the payment.
    Unauthorised,
    /// Another error: not received, not as described, a duplicate, a wrong amount.
    Error,
}

/// The facts the timers depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The law.
    pub regime: Regime,
    /// The claim.
    pub claim: Claim,
    /// When the payment was made (debited).
    pub payment_day: Day,
    /// Reg E: when the periodic statement that first showed it was sent.
    pub statement_day: Day,
    /// When the payer gave notice (opened the dispute).
    pub notice_day: Day,
    /// Reg E: the account was opened less than 30 days before the notice.
    pub new_account: bool,
    /// Reg E: a point-of-sale or foreign payment (the longer investigation period).
    pub pos_or_foreign: bool,
    /// The payment's amount in ISO 4217 minor units (Korea's 1-year window for KRW 10,000 or less).
    pub amount_iso_minor: u128,
}

/// Every deadline of one dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The last day a notice is timely.
    pub notice_by: Day,
    /// Whether this notice was.
    pub timely: bool,
    /// The payee answers by this day (obol's rule: 5 business days).
    pub payee_answer_by: Day,
    /// The payer is provisionally credited (PSD2: refunded) from this day ...
    pub provisional_credit_from: Option<Day>,
    /// ... and at the latest on this day, unless the dispute is resolved before.
    pub provisional_credit_by: Option<Day>,
    /// Resolved by this day without provisional credit (Reg E: 10 or 20 business days).
    pub resolve_by: Day,
    /// Resolved by this day at the latest (with provisional credit given).
    pub resolve_by_extended: Day,
    /// Business days to report the result once resolved (Reg E: 3).
    pub report_within_business_days: u32,
}

/// Obol's payee answer period, business days.
pub const PAYEE_ANSWER_BUSINESS_DAYS: u32 = 5;
/// Reg E's notice window after the statement, calendar days.
pub const REG_E_NOTICE_DAYS: i64 = 60;

/// The same calendar day `months` later (the month's last day if it has fewer days).
fn plus_months(day: Day, months: i64) -> Day {
    let (year, month, dom) = obol_core::time::civil_from_days(day.0);
    let total = year * 12 + i64::from(month) - 1 + months;
    let (year, month) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let dom = i64::from(dom).min(obol_core::time::days_in_month(year, month));
    Day(obol_core::time::days_from_civil(year, month, dom))
}

/// The deadlines of a dispute with `facts`, on `calendar` (the one in force on the notice day).
pub fn deadlines(facts: &Facts, calendar: &Calendar) -> Deadlines {
    let notice = facts.notice_day;
    let payee_answer_by = calendar.add_business_days(notice, PAYEE_ANSWER_BUSINESS_DAYS);
    match facts.regime {
        Regime::RegE => {
            let notice_by = facts.statement_day.plus(REG_E_NOTICE_DAYS);
            let short = if facts.new_account { 20 } else { 10 };
            let resolve_by = calendar.add_business_days(notice, short);
            let long = if facts.new_account || facts.pos_or_foreign { 90 } else { 45 };
            Deadlines {
                notice_by,
                timely: notice <= notice_by,
                payee_answer_by,
                // Owed only if the investigation outlasts the short period: due on its last day.
                provisional_credit_from: Some(resolve_by),
                provisional_credit_by: Some(resolve_by),
                resolve_by,
                resolve_by_extended: notice.plus(long),
                report_within_business_days: 3,
            }
        }
        Regime::Psd2 => {
            let notice_by = plus_months(facts.payment_day, 13);
            let unauthorised = facts.claim == Claim::Unauthorised;
            let answer_by = calendar.add_business_days(notice, 15);
            Deadlines {
                notice_by,
                timely: notice <= notice_by,
                payee_answer_by,
                provisional_credit_from: unauthorised.then_some(notice),
                provisional_credit_by: unauthorised.then(|| calendar.add_business_days(notice, 1)),
                resolve_by: answer_by,
                resolve_by_extended: calendar.add_business_days(notice, 35),
                report_within_business_days: 0,
            }
        }
        Regime::Korea => {
            let small = facts.amount_iso_minor <= 10_000;
            let notice_by = plus_months(facts.payment_day, if small { 12 } else { 60 });
            Deadlines {
                notice_by,
                timely: notice <= notice_by,
                payee_answer_by,
                provisional_credit_from: None,
                provisional_credit_by: None,
                resolve_by: notice.plus(15),
                resolve_by_extended: notice.plus(15),
                report_within_business_days: 0,
            }
        }
    }
}

/// Where a dispute stands, as the timer sweep sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The payer was provisionally credited (refunded).
    pub provisionally_credited: bool,
    /// The payee answered.
    pub payee_answered: bool,
    /// The dispute is resolved or withdrawn.
    pub closed: bool,
}

/// What the timer sweep must do for a dispute today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Credit the payer provisionally (PSD2: refund) now.
    ProvisionalCredit,
    /// Resolve in the payer's favour: the payee missed its answer, or the investigation its
    /// deadline.
    ResolveForPayer,
}

/// What is due on `today` for a dispute with `deadlines` at `progress` (at most one action,
/// the most urgent; the sweep runs again after acting).
pub fn due(deadlines: &Deadlines, progress: Progress, today: Day) -> Option<Action> {
    if progress.closed {
        return None;
    }
    // A payee that lets its answer deadline pass loses.
    if !progress.payee_answered && today > deadlines.payee_answer_by {
        return Some(Action::ResolveForPayer);
    }
    if let Some(from) = deadlines.provisional_credit_from
        && !progress.provisionally_credited
        && today >= from
    {
        return Some(Action::ProvisionalCredit);
    }
    // An investigation that runs out of time ends in the payer's favour.
    let limit = if progress.provisionally_credited { deadlines.resolve_by_extended } else { deadlines.resolve_by };
    if today > limit {
        return Some(Action::ResolveForPayer);
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::calendar::Calendars;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    fn facts(regime: Regime, notice: &str) -> Facts {
        Facts {
            regime,
            claim: Claim::Unauthorised,
            payment_day: day("2026-03-02"),
            statement_day: day("2026-03-31"),
            notice_day: day(notice),
            new_account: false,
            pos_or_foreign: false,
            amount_iso_minor: 300,
        }
    }

    #[test]
    fn reg_e_notice_on_day_60_is_timely_and_day_61_is_not() {
        let calendars = Calendars::shipped().unwrap();
        let us = calendars.in_force("us-fed", day("2026-05-30")).unwrap();
        // Statement 31 March 2026: day 60 is 30 May, day 61 is 31 May.
        assert!(deadlines(&facts(Regime::RegE, "2026-05-30"), us).timely);
        assert!(!deadlines(&facts(Regime::RegE, "2026-05-31"), us).timely);
    }

    #[test]
    fn reg_e_investigation_is_10_business_days_or_45_days_with_provisional_credit() {
        let calendars = Calendars::shipped().unwrap();
        let us = calendars.in_force("us-fed", day("2026-11-16")).unwrap();
        let d = deadlines(&facts(Regime::RegE, "2026-11-16"), us);
        // Mon 16 Nov + 10 BD, Thanksgiving (26th) closed: 17..20, 23..25, 27, 30, 1 Dec.
        assert_eq!(d.resolve_by, day("2026-12-01"));
        assert_eq!(d.provisional_credit_by, Some(day("2026-12-01")));
        assert_eq!(d.resolve_by_extended, day("2026-12-31"));
        let new = deadlines(&Facts { new_account: true, ..facts(Regime::RegE, "2026-11-16") }, us);
        assert_eq!(new.resolve_by, us.add_business_days(day("2026-11-16"), 20));
        assert_eq!(new.resolve_by_extended, day("2026-11-16").plus(90));
    }

    #[test]
    fn psd2_refunds_an_unauthorised_payment_by_the_end_of_the_next_business_day() {
        let calendars = Calendars::shipped().unwrap();
        let eu = calendars.in_force("eu-target2", day("2026-04-02")).unwrap();
        let d = deadlines(&facts(Regime::Psd2, "2026-04-02"), eu);
        assert_eq!(d.provisional_credit_from, Some(day("2026-04-02")), "at once");
        assert_eq!(d.provisional_credit_by, Some(day("2026-04-07")), "Good Friday and Easter Monday are closed");
        assert_eq!(d.notice_by, day("2027-04-02"), "13 months after the debit of 2 March 2026");
        let error = deadlines(&Facts { claim: Claim::Error, ..facts(Regime::Psd2, "2026-04-02") }, eu);
        assert_eq!(error.provisional_credit_by, None, "only unauthorised payments are refunded at once");
    }

    #[test]
    fn korea_keeps_a_small_payment_disputable_for_a_year_and_a_larger_one_for_five() {
        let calendars = Calendars::shipped().unwrap();
        let kr = calendars.in_force("kr", day("2026-03-03")).unwrap();
        let small = deadlines(&Facts { amount_iso_minor: 10_000, ..facts(Regime::Korea, "2026-03-03") }, kr);
        assert_eq!(small.notice_by, day("2027-03-02"));
        let large = deadlines(&Facts { amount_iso_minor: 10_001, ..facts(Regime::Korea, "2026-03-03") }, kr);
        assert_eq!(large.notice_by, day("2031-03-02"));
        assert_eq!(plus_months(day("2026-01-31"), 1), day("2026-02-28"));
    }

    /// A calendar with the given weekend and holidays (days after 2026-01-01).
    fn calendar(holidays: &[u16]) -> Calendar {
        let start = day("2026-01-01");
        Calendar {
            id: "test".into(),
            version: 1,
            effective_from: start,
            weekend: [5u8, 6].into_iter().collect(),
            holidays: holidays.iter().map(|d| start.plus(i64::from(*d))).collect(),
        }
    }

    proptest! {
        /// Random calendars and dispute histories: every business-day deadline is a business
        /// day; a Reg E investigation that outlasts its short period has credited the payer by
        /// its last day; no dispute stays open past its last deadline; a payee that never
        /// answers loses the day after its answer deadline.
        #[test]
        fn timers_keep_every_deadline_on_any_calendar(
            holidays in proptest::collection::vec(0u16..400, 0..40),
            regime in prop_oneof![Just(Regime::RegE), Just(Regime::Psd2), Just(Regime::Korea)],
            unauthorised in any::<bool>(),
            new_account in any::<bool>(),
            pos_or_foreign in any::<bool>(),
            notice_offset in 0i64..300,
            answer_after in proptest::option::of(0i64..40),
            resolve_after in proptest::option::of(0i64..120),
        ) {
            let calendar = calendar(&holidays);
            let notice = day("2026-01-01").plus(notice_offset);
            let facts = Facts {
                regime,
                claim: if unauthorised { Claim::Unauthorised } else { Claim::Error },
                payment_day: notice.plus(-20),
                statement_day: notice.plus(-10),
                notice_day: notice,
                new_account,
                pos_or_foreign,
                amount_iso_minor: 500,
            };
            let d = deadlines(&facts, &calendar);
            prop_assert!(calendar.is_business_day(d.payee_answer_by));
            if regime != Regime::Korea {
                prop_assert!(calendar.is_business_day(d.resolve_by));
            }
            if let Some(by) = d.provisional_credit_by {
                prop_assert!(calendar.is_business_day(by));
            }
            prop_assert!(d.resolve_by <= d.resolve_by_extended);
            let mut progress = Progress::default();
            let (mut credited_on, mut closed_on) = (None, None);
            for offset in 0..200 {
                let today = notice.plus(offset);
                // An answer after its deadline is refused (the dispute is the payer's by then).
                if answer_after == Some(offset) && today <= d.payee_answer_by {
                    progress.payee_answered = true;
                }
                // The investigation concludes on its own day, if within its allowed time.
                if !progress.closed && resolve_after == Some(offset) {
                    let allowed = if progress.provisionally_credited { d.resolve_by_extended } else { d.resolve_by };
                    if today <= allowed {
                        progress.closed = true;
                        closed_on = Some(today);
                    }
                }
                match due(&d, progress, today) {
                    Some(Action::ProvisionalCredit) => {
                        progress.provisionally_credited = true;
                        credited_on = Some(today);
                    }
                    Some(Action::ResolveForPayer) => {
                        progress.closed = true;
                        closed_on = Some(today);
                    }
                    None => {}
                }
            }
            let closed_on = closed_on.expect("every dispute closes");
            prop_assert!(closed_on <= d.resolve_by_extended.plus(1), "closed {closed_on:?}, deadlines {d:?}");
            if answer_after.is_none_or(|a| notice.plus(a) > d.payee_answer_by) {
                prop_assert!(closed_on <= d.payee_answer_by.plus(1));
            }
            if let Some(by) = d.provisional_credit_by {
                if closed_on > by {
                    prop_assert!(credited_on.is_some_and(|c| c <= by), "credit {credited_on:?} by {by:?}");
                }
            }
        }
    }
}
