//! Business-day calendars as data: a calendar names its weekend days and its holidays, carries a
//! version and the day it takes effect, and is written in TOML (`policy/calendars/*.toml`). A
//! correction is a new version with a later effective day; [`Calendars::in_force`] picks, for a
//! day, the newest version in force on it, so deadlines already given never move.

use std::collections::BTreeSet;

use serde::Deserialize;

/// A UTC calendar day: days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

const NS_PER_DAY: u64 = 86_400_000_000_000;

impl Day {
    /// The day of a ledger time (ns since the Unix epoch).
    pub fn of_ns(ns: u64) -> Day {
        Day(i64::try_from(ns / NS_PER_DAY).unwrap_or(i64::MAX))
    }

    /// The first ns of this day (0 before the epoch).
    pub fn start_ns(self) -> u64 {
        u64::try_from(self.0).unwrap_or(0).saturating_mul(NS_PER_DAY)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Day> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > obol_core::time::days_in_month(year, month) {
            return None;
        }
        Some(Day(obol_core::time::days_from_civil(year, month, day)))
    }

    /// The day `n` calendar days later.
    pub fn plus(self, n: i64) -> Day {
        Day(self.0.saturating_add(n))
    }

    /// 0 Monday ... 6 Sunday.
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (3).
        u8::try_from(self.0.saturating_add(3).rem_euclid(7)).unwrap_or(0)
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        obol_core::time::iso_date(self.start_ns())
    }
}

/// Why a calendar file was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not TOML of the calendar's shape.
    #[error("calendar: {0}")]
    Syntax(String),
    /// A field's value is wrong.
    #[error("calendar {id}: {what}")]
    Invalid {
        /// The calendar.
        id: String,
        /// What is wrong.
        what: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    id: String,
    version: u32,
    effective_from: String,
    weekend: Vec<String>,
    holidays: Vec<String>,
}

/// One version of a business-day calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Its name (`us-fed`, `eu-target2`, `kr`).
    pub id: String,
    /// Its version; a correction is a higher one.
    pub version: u32,
    /// The first day it is in force.
    pub effective_from: Day,
    /// Weekend days, 0 Monday ... 6 Sunday.
    pub weekend: BTreeSet<u8>,
    /// Holidays.
    pub holidays: BTreeSet<Day>,
}

/// The longest run of closed days a calendar may have (a bound on every business-day loop).
pub const CLOSED_RUN_MAX: i64 = 31;

impl Calendar {
    /// Reads a calendar from TOML.
    pub fn parse(text: &str) -> Result<Calendar, CalendarError> {
        let file: CalendarFile = toml::from_str(text).map_err(|e| CalendarError::Syntax(e.to_string()))?;
        let invalid = |what: String| CalendarError::Invalid { id: file.id.clone(), what };
        let valid_id = (1..=32).contains(&file.id.len())
            && file.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_id {
            return Err(invalid("id: 1 to 32 lowercase letters, digits or '-'".into()));
        }
        let effective_from = Day::parse(&file.effective_from)
            .ok_or_else(|| invalid(format!("effective_from {:?}", file.effective_from)))?;
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let mut weekend = BTreeSet::new();
        for name in &file.weekend {
            let index = NAMES.iter().position(|n| n == name).ok_or_else(|| invalid(format!("weekend day {name:?}")))?;
            weekend.insert(u8::try_from(index).unwrap_or(0));
        }
        if weekend.len() > 2 {
            return Err(invalid("at most two weekend days".into()));
        }
        let mut holidays = BTreeSet::new();
        for text in &file.holidays {
            let day = Day::parse(text).ok_or_else(|| invalid(format!("holiday {text:?}")))?;
            if !holidays.insert(day) {
                return Err(invalid(format!("holiday {text} listed twice")));
            }
        }
        let calendar = Calendar { id: file.id.clone(), version: file.version, effective_from, weekend, holidays };
        // Every loop over business days is bounded: no run of closed days may be too long.
        let mut run = 0;
        if let (Some(first), Some(last)) = (calendar.holidays.first(), calendar.holidays.last()) {
            let mut day = *first;
            while day <= *last {
                run = if calendar.is_business_day(day) { 0 } else { run + 1 };
                if run > CLOSED_RUN_MAX {
                    return Err(invalid(format!("more than {CLOSED_RUN_MAX} closed days in a row")));
                }
                day = day.plus(1);
            }
        }
        Ok(calendar)
    }

    /// Whether payments are processed on `day`.
    pub fn is_business_day(&self, day: Day) -> bool {
        !self.weekend.contains(&day.weekday()) && !self.holidays.contains(&day)
    }

    /// The `n`th business day after `day` (`n` = 0: `day` itself if it is one, else the next).
    pub fn add_business_days(&self, day: Day, n: u32) -> Day {
        let mut current = day;
        let mut bounded = 0i64;
        if n == 0 {
            while !self.is_business_day(current) && bounded <= CLOSED_RUN_MAX {
                current = current.plus(1);
                bounded += 1;
            }
            return current;
        }
        let mut left = n;
        while left > 0 {
            current = current.plus(1);
            if self.is_business_day(current) {
                left -= 1;
                bounded = 0;
            } else {
                bounded += 1;
                if bounded > CLOSED_RUN_MAX {
                    // Unreachable for a parsed calendar; count the day rather than loop forever.
                    left -= 1;
                    bounded = 0;
                }
            }
        }
        current
    }
}

/// Every version of every calendar.
#[derive(Clone, Debug, Default)]
pub struct Calendars {
    all: Vec<Calendar>,
}

/// The calendars obol ships (`policy/calendars/`).
pub const SHIPPED: [&str; 4] = [
    include_str!("../../../policy/calendars/us-fed.toml"),
    include_str!("../../../policy/calendars/eu-target2.toml"),
    include_str!("../../../policy/calendars/kr.toml"),
    include_str!("../../../policy/calendars/kr-2.toml"),
];

impl Calendars {
    /// The shipped calendars.
    pub fn shipped() -> Result<Calendars, CalendarError> {
        let mut calendars = Calendars::default();
        for text in SHIPPED {
            calendars.add(Calendar::parse(text)?)?;
        }
        Ok(calendars)
    }

    /// Adds a version; the same id and version twice is refused.
    pub fn add(&mut self, calendar: Calendar) -> Result<(), CalendarError> {
        if self.all.iter().any(|c| c.id == calendar.id && c.version == calendar.version) {
            return Err(CalendarError::Invalid {
                id: calendar.id,
                what: format!("version {} exists", calendar.version),
            });
        }
        self.all.push(calendar);
        Ok(())
    }

    /// The version of calendar `id` in force on `day`: the highest version whose effective day
    /// is on or before it.
    pub fn in_force(&self, id: &str, day: Day) -> Option<&Calendar> {
        self.all.iter().filter(|c| c.id == id && c.effective_from <= day).max_by_key(|c| c.version)
    }

    /// [`Calendars::in_force`], or for a day before every version of `id` took effect, its
    /// earliest version (a clock set before the calendar's first day still gets deadlines).
    pub fn for_day(&self, id: &str, day: Day) -> Option<&Calendar> {
        self.in_force(id, day).or_else(|| self.all.iter().filter(|c| c.id == id).min_by_key(|c| c.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    #[test]
    fn shipped_calendars_list_only_weekday_holidays_in_order() {
        let calendars = Calendars::shipped().unwrap();
        for id in ["us-fed", "eu-target2", "kr"] {
            let calendar = calendars.in_force(id, day("2026-06-01")).unwrap();
            assert!(!calendar.holidays.is_empty(), "{id}");
        }
        // The US list names observed weekdays only (a Saturday holiday closes nothing).
        let us = calendars.in_force("us-fed", day("2026-06-01")).unwrap();
        assert!(us.holidays.iter().all(|d| d.weekday() < 5), "{:?}", us.holidays);
        assert_eq!(day("2026-11-26").weekday(), 3, "Thanksgiving 2026 is a Thursday");
        assert_eq!(day("2026-01-01").weekday(), 3, "2026 began on a Thursday");
        assert!(calendars.in_force("us-fed", day("2025-12-31")).is_none(), "not in force before its day");
    }

    #[test]
    fn korea_2027_holidays_are_in_version_2_only_from_its_effective_day() {
        let calendars = Calendars::shipped().unwrap();
        let before = calendars.in_force("kr", day("2026-12-06")).unwrap();
        let after = calendars.in_force("kr", day("2026-12-07")).unwrap();
        assert_eq!((before.version, after.version), (1, 2));
        assert!(before.is_business_day(day("2027-01-01")), "version 1 never listed 2027");
        assert!(!after.is_business_day(day("2027-01-01")));
        assert!(after.holidays.iter().all(|d| d.weekday() < 5), "weekday holidays only: {:?}", after.holidays);
        // Christmas 2027 is a Saturday; its substitute is Monday 27 December.
        assert_eq!(day("2027-12-25").weekday(), 5);
        assert!(!after.is_business_day(day("2027-12-27")));
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let calendars = Calendars::shipped().unwrap();
        let us = calendars.in_force("us-fed", day("2026-11-20")).unwrap();
        // Friday 20 Nov 2026 + 5 BD: 23, 24, 25, (26 Thanksgiving), 27, 30 -> Monday 30 Nov.
        assert_eq!(us.add_business_days(day("2026-11-20"), 5), day("2026-11-30"));
        assert_eq!(us.add_business_days(day("2026-11-26"), 0), day("2026-11-27"));
        let eu = calendars.in_force("eu-target2", day("2026-04-02")).unwrap();
        // Thursday before Easter + 1 BD: Good Friday and Easter Monday are closed.
        assert_eq!(eu.add_business_days(day("2026-04-02"), 1), day("2026-04-07"));
    }

    #[test]
    fn a_correction_applies_from_its_day_and_never_before() {
        let mut calendars = Calendars::shipped().unwrap();
        let corrected = "id = \"kr\"\nversion = 3\neffective_from = \"2027-07-01\"\nweekend = [\"sat\", \"sun\"]\nholidays = [\"2027-07-16\"]\n";
        calendars.add(Calendar::parse(corrected).unwrap()).unwrap();
        assert_eq!(calendars.in_force("kr", day("2027-06-30")).unwrap().version, 2);
        assert_eq!(calendars.in_force("kr", day("2027-07-01")).unwrap().version, 3);
        assert!(calendars.add(Calendar::parse(corrected).unwrap()).is_err(), "a version once");
    }

    #[test]
    fn bad_calendars_are_refused_with_the_reason() {
        for (text, what) in [
            (
                "id = \"x\"\nversion = 1\neffective_from = \"2026-02-30\"\nweekend = []\nholidays = []\n",
                "effective_from",
            ),
            (
                "id = \"x\"\nversion = 1\neffective_from = \"2026-01-01\"\nweekend = [\"fun\"]\nholidays = []\n",
                "weekend day",
            ),
            ("id = \"X\"\nversion = 1\neffective_from = \"2026-01-01\"\nweekend = []\nholidays = []\n", "id"),
            (
                "id = \"x\"\nversion = 1\neffective_from = \"2026-01-01\"\nweekend = []\nholidays = [\"2026-01-01\", \"2026-01-01\"]\n",
                "twice",
            ),
        ] {
            let error = Calendar::parse(text).unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
        }
        let mut closed =
            String::from("id = \"x\"\nversion = 1\neffective_from = \"2026-01-01\"\nweekend = []\nholidays = [");
        for n in 0..40 {
            closed.push_str(&format!("\"{}\",", Day(20_454 + n).iso()));
        }
        closed.push_str("]\n");
        assert!(Calendar::parse(&closed).unwrap_err().to_string().contains("closed days in a row"));
    }
}
