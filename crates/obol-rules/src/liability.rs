//! Who bears the loss of an unauthorised payment, from the recorded authentication evidence,
//! with the reasons a person can read.
//!
//! - **EU PSD2 art. 74**: the payer bears at most EUR 50 of a lost, stolen or misappropriated
//!   instrument; nothing if the payer's provider did not require strong customer authentication
//!   (unless the payer acted fraudulently), nothing for losses after the payer gave notice; all
//!   of it for fraud or gross negligence. A payee (or its provider) that refused strong customer
//!   authentication reimburses the payer's provider.
//! - **US Regulation E 1005.6(b)**: notice within 2 business days of learning of the loss: at
//!   most the lesser of $50 and what was taken before notice; later: at most $500 (the first two
//!   business days' share capped at $50, plus what was taken after them before notice); and,
//!   for a failure to report within 60 days of the statement, everything taken after those 60
//!   days and before notice. The consumer's negligence does not raise it.
//!
//! Amounts are ISO 4217 minor units of the currency (euro or US cents).

use crate::calendar::{Calendar, Day};

/// Every reason code a decision can carry (each has a plain-language explanation).
pub const REASON_CODES: &[&str] = &[
    "gross_negligence",
    "kr_provider_bears_accidents",
    "kr_user_gross_negligence",
    "late_notice_cap_500",
    "late_statement_report",
    "no_lost_device",
    "no_strong_authentication",
    "nothing_after_notice",
    "payee_refused_strong_authentication",
    "payer_cap_eur_50",
    "payer_fraud",
    "timely_notice_cap_50",
];

/// EUR 50, in cents.
pub const PSD2_PAYER_CAP_MINOR: u128 = 5_000;
/// USD 50, in cents.
pub const REG_E_TIMELY_CAP_MINOR: u128 = 5_000;
/// USD 500, in cents.
pub const REG_E_LATE_CAP_MINOR: u128 = 50_000;

/// A decision: what the payer bears, what the provider bears, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liability {
    /// What the payer bears.
    pub payer_minor: u128,
    /// What the payer's provider (or, where `payee_reimburses`, the payee) bears.
    pub provider_minor: u128,
    /// A payee that refused strong customer authentication reimburses the payer's provider.
    pub payee_reimburses: bool,
    /// Reason codes, in order (stable: explanations are keyed by them).
    pub reasons: Vec<&'static str>,
}

/// The evidence PSD2 art. 74 weighs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Psd2Evidence {
    /// The unauthorised payments' total.
    pub loss_minor: u128,
    /// What of it was taken after the payer notified its provider.
    pub after_notice_minor: u128,
    /// Strong customer authentication was applied to the payments.
    pub sca_applied: bool,
    /// The payee (or its provider) refused strong customer authentication.
    pub payee_refused_sca: bool,
    /// The payer acted fraudulently.
    pub payer_fraud: bool,
    /// The payer failed, intentionally or with gross negligence, to keep its credentials safe.
    pub gross_negligence: bool,
}

/// PSD2 art. 74.
pub fn psd2(evidence: &Psd2Evidence) -> Liability {
    let loss = evidence.loss_minor;
    let split = |payer: u128, reasons: Vec<&'static str>, payee_reimburses: bool| Liability {
        payer_minor: payer.min(loss),
        provider_minor: loss.saturating_sub(payer.min(loss)),
        payee_reimburses,
        reasons,
    };
    if evidence.payer_fraud {
        return split(loss, vec!["payer_fraud"], false);
    }
    if !evidence.sca_applied {
        let mut reasons = vec!["no_strong_authentication"];
        if evidence.payee_refused_sca {
            reasons.push("payee_refused_strong_authentication");
        }
        return split(0, reasons, evidence.payee_refused_sca);
    }
    let before_notice = loss.saturating_sub(evidence.after_notice_minor);
    if evidence.gross_negligence {
        return split(before_notice, vec!["gross_negligence", "nothing_after_notice"], false);
    }
    let mut reasons = vec!["payer_cap_eur_50"];
    if evidence.after_notice_minor > 0 {
        reasons.push("nothing_after_notice");
    }
    split(before_notice.min(PSD2_PAYER_CAP_MINOR), reasons, false)
}

/// Korea's Electronic Financial Transactions Act art. 9 (⚠ secondary): the provider bears the
/// loss of an accident (forged or altered access media, a processing failure, access obtained by
/// hacking), unless the user acted intentionally or with gross negligence and had agreed in
/// advance to bear it; then the user bears it all.
pub fn korea(loss_minor: u128, user_intent_or_gross_negligence: bool) -> Liability {
    if user_intent_or_gross_negligence {
        Liability {
            payer_minor: loss_minor,
            provider_minor: 0,
            payee_reimburses: false,
            reasons: vec!["kr_user_gross_negligence"],
        }
    } else {
        Liability {
            payer_minor: 0,
            provider_minor: loss_minor,
            payee_reimburses: false,
            reasons: vec!["kr_provider_bears_accidents"],
        }
    }
}

/// One unauthorised transfer: when and how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The day it was made.
    pub day: Day,
    /// Its amount.
    pub minor: u128,
}

/// The facts Regulation E 1005.6(b) weighs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegEFacts {
    /// Every unauthorised transfer.
    pub taken: Vec<Taken>,
    /// When the consumer learned of the loss or theft of the access device (`None`: it was not
    /// lost or stolen; only the statement rule applies).
    pub learned: Option<Day>,
    /// When the consumer notified the institution.
    pub notice: Day,
    /// When the statement first showing an unauthorised transfer was sent.
    pub statement: Day,
}

/// Reg E 1005.6(b), on the institution's business-day `calendar`.
pub fn reg_e(facts: &RegEFacts, calendar: &Calendar) -> Liability {
    let total: u128 = facts.taken.iter().map(|t| t.minor).fold(0, u128::saturating_add);
    let before_notice = |until: Day| -> u128 {
        facts
            .taken
            .iter()
            .filter(|t| t.day < until && t.day < facts.notice)
            .map(|t| t.minor)
            .fold(0, u128::saturating_add)
    };
    let mut reasons = Vec::new();
    // (b)(3): transfers after 60 days from the statement and before notice: the consumer's.
    let statement_window_end = facts.statement.plus(60);
    let after_window: u128 = if facts.notice > statement_window_end {
        reasons.push("late_statement_report");
        facts
            .taken
            .iter()
            .filter(|t| t.day > statement_window_end && t.day < facts.notice)
            .map(|t| t.minor)
            .fold(0, u128::saturating_add)
    } else {
        0
    };
    let capped = match facts.learned {
        None => {
            reasons.push("no_lost_device");
            0
        }
        Some(learned) => {
            let two_days = calendar.add_business_days(learned, 2);
            if facts.notice <= two_days {
                reasons.push("timely_notice_cap_50");
                before_notice(facts.notice.plus(1)).min(REG_E_TIMELY_CAP_MINOR)
            } else {
                reasons.push("late_notice_cap_500");
                let first = before_notice(two_days.plus(1)).min(REG_E_TIMELY_CAP_MINOR);
                let later: u128 = facts
                    .taken
                    .iter()
                    .filter(|t| t.day > two_days && t.day < facts.notice && t.day <= statement_window_end)
                    .map(|t| t.minor)
                    .fold(0, u128::saturating_add);
                first.saturating_add(later).min(REG_E_LATE_CAP_MINOR)
            }
        }
    };
    let payer = capped.saturating_add(after_window).min(total);
    Liability { payer_minor: payer, provider_minor: total - payer, payee_reimburses: false, reasons }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::calendar::Calendars;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    #[test]
    fn psd2_article_74_table_at_each_boundary() {
        let base = Psd2Evidence { loss_minor: 12_000, sca_applied: true, ..Psd2Evidence::default() };
        // Each row: evidence -> (payer, provider, payee reimburses).
        let rows = [
            (base, (5_000, 7_000, false)),
            (Psd2Evidence { loss_minor: 5_000, ..base }, (5_000, 0, false)),
            (Psd2Evidence { loss_minor: 5_001, ..base }, (5_000, 1, false)),
            (Psd2Evidence { loss_minor: 4_999, ..base }, (4_999, 0, false)),
            (Psd2Evidence { sca_applied: false, ..base }, (0, 12_000, false)),
            (Psd2Evidence { sca_applied: false, payee_refused_sca: true, ..base }, (0, 12_000, true)),
            (Psd2Evidence { sca_applied: false, payer_fraud: true, ..base }, (12_000, 0, false)),
            (Psd2Evidence { gross_negligence: true, ..base }, (12_000, 0, false)),
            (Psd2Evidence { gross_negligence: true, after_notice_minor: 2_000, ..base }, (10_000, 2_000, false)),
            (Psd2Evidence { after_notice_minor: 9_000, ..base }, (3_000, 9_000, false)),
        ];
        for (evidence, (payer, provider, reimburses)) in rows {
            let liability = psd2(&evidence);
            assert_eq!(
                (liability.payer_minor, liability.provider_minor, liability.payee_reimburses),
                (payer, provider, reimburses),
                "{evidence:?} -> {liability:?}"
            );
            assert!(!liability.reasons.is_empty());
            assert!(liability.reasons.iter().all(|r| REASON_CODES.contains(r)), "{:?}", liability.reasons);
        }
    }

    #[test]
    fn korea_puts_accidents_on_the_provider_unless_the_user_was_grossly_negligent() {
        assert_eq!((korea(9_900, false).payer_minor, korea(9_900, false).provider_minor), (0, 9_900));
        assert_eq!((korea(9_900, true).payer_minor, korea(9_900, true).provider_minor), (9_900, 0));
        assert_eq!(korea(0, false).reasons, vec!["kr_provider_bears_accidents"]);
    }

    #[test]
    fn reg_e_1005_6_table_at_each_boundary() {
        let calendars = Calendars::shipped().unwrap();
        let us = calendars.in_force("us-fed", day("2026-03-02")).unwrap();
        let taken = |days: &[(&str, u128)]| -> Vec<Taken> {
            days.iter().map(|(d, m)| Taken { day: day(d), minor: *m }).collect()
        };
        // Learned Monday 2 March; two business days later is Wednesday 4 March.
        let learned = Some(day("2026-03-02"));
        let statement = day("2026-03-31");
        let loss = taken(&[("2026-03-02", 30_000), ("2026-03-05", 40_000)]);
        let case = |notice: &str, taken: Vec<Taken>, learned: Option<Day>, statement: Day| {
            reg_e(&RegEFacts { taken, learned, notice: day(notice), statement }, us).payer_minor
        };
        // Notice on the second business day: at most $50.
        assert_eq!(case("2026-03-04", loss.clone(), learned, statement), 5_000);
        // Less than $50 taken: only that.
        assert_eq!(case("2026-03-04", taken(&[("2026-03-02", 1_234)]), learned, statement), 1_234);
        // Notice on the third business day: $50 of the first days plus what followed, up to $500.
        assert_eq!(case("2026-03-06", loss.clone(), learned, statement), 45_000);
        assert_eq!(
            case("2026-03-06", taken(&[("2026-03-02", 30_000), ("2026-03-05", 60_000)]), learned, statement),
            50_000
        );
        // Not lost or stolen, reported within 60 days of the statement: nothing.
        assert_eq!(case("2026-05-30", loss.clone(), None, statement), 0);
        // Reported on day 61: what was taken after day 60 and before notice is the consumer's.
        let late = taken(&[("2026-03-05", 1_000), ("2026-05-31", 70_000), ("2026-06-01", 80_000)]);
        assert_eq!(case("2026-05-31", late.clone(), None, statement), 0, "day 60 is the window's last day");
        assert_eq!(case("2026-06-02", late, None, statement), 150_000, "unlimited after the window");
    }

    proptest! {
        /// Liability never exceeds the loss; the payer and provider shares add up to it; a
        /// later notice never lowers what the consumer bears; a timely notice never costs more
        /// than $50.
        #[test]
        fn reg_e_is_bounded_and_monotone_in_the_notice_day(
            transfers in proptest::collection::vec((0i64..120, 1u128..100_000), 1..12),
            learned_offset in proptest::option::of(0i64..30),
            notice_offset in 0i64..150,
        ) {
            let calendars = Calendars::shipped().unwrap();
            let start = day("2026-02-02");
            let us = calendars.in_force("us-fed", start).unwrap();
            let taken: Vec<Taken> = transfers.iter().map(|(d, m)| Taken { day: start.plus(*d), minor: *m }).collect();
            let total: u128 = taken.iter().map(|t| t.minor).sum();
            let facts = |notice: i64| RegEFacts {
                taken: taken.clone(),
                learned: learned_offset.map(|o| start.plus(o)),
                notice: start.plus(notice),
                statement: start.plus(28),
            };
            let now = reg_e(&facts(notice_offset), us);
            let later = reg_e(&facts(notice_offset + 1), us);
            prop_assert!(now.reasons.iter().all(|r| REASON_CODES.contains(r)), "{:?}", now.reasons);
            prop_assert!(now.payer_minor <= total);
            prop_assert_eq!(now.payer_minor + now.provider_minor, total);
            prop_assert!(later.payer_minor >= now.payer_minor, "{now:?} then {later:?}");
            if let Some(learned) = learned_offset {
                let learned = start.plus(learned);
                if start.plus(notice_offset) <= us.add_business_days(learned, 2) && start.plus(notice_offset) <= start.plus(88) {
                    prop_assert!(now.payer_minor <= REG_E_TIMELY_CAP_MINOR);
                }
            }
        }

        /// PSD2: the shares add up, and without SCA and without fraud the payer bears nothing.
        #[test]
        fn psd2_shares_add_up(loss in 0u128..1_000_000, after in 0u128..1_000_000, sca in any::<bool>(),
            refused in any::<bool>(), fraud in any::<bool>(), negligent in any::<bool>()) {
            let evidence = Psd2Evidence { loss_minor: loss, after_notice_minor: after.min(loss), sca_applied: sca,
                payee_refused_sca: refused, payer_fraud: fraud, gross_negligence: negligent };
            let liability = psd2(&evidence);
            prop_assert_eq!(liability.payer_minor + liability.provider_minor, loss);
            if !sca && !fraud {
                prop_assert_eq!(liability.payer_minor, 0);
            }
            if sca && !fraud && !negligent {
                prop_assert!(liability.payer_minor <= PSD2_PAYER_CAP_MINOR);
            }
        }
    }
}
