//! obol's jurisdiction rules, pure: business-day calendars as versioned data ([`calendar`]),
//! the legal timers of a dispute ([`timers`]: US Regulation E 1005.11, EU PSD2 arts. 71, 73 and
//! 101, Korea's Electronic Financial Transactions Act) and who bears the loss of an unauthorised
//! payment ([`liability`]: PSD2 art. 74, Reg E 1005.6).
//!
//! **Architecture Invariant:** no I/O, no clock, no randomness: days and amounts are arguments.
//! Every deadline is computed on the calendar in force on the day the dispute was raised, so a
//! calendar corrected later never moves a deadline already given.
//!
//! **API Boundary:** [`calendar::Calendars::in_force`], [`timers::deadlines`],
//! [`timers::due`], [`liability::psd2`], [`liability::reg_e`].
#![deny(missing_docs)]

pub mod calendar;
pub mod liability;
pub mod timers;

pub use calendar::{Calendar, Calendars, Day};
