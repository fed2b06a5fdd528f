//! Money: assets and amounts as exact integers.
//!
//! An [`Asset`] is an ISO 4217 currency code plus a scale; an [`Amount`] counts units of
//! 10^-scale of that currency. USD at scale 2 counts cents, USD at scale 9 counts nano-dollars.
//! Nothing here uses floating point: amounts are parsed from and printed as decimal digit strings
//! and all arithmetic is checked.

use std::fmt;

/// The largest scale an asset may have: 10^18 fits comfortably in a u64 and keeps every
/// `Amount` printable as at most 39 digits.
pub const SCALE_MAX: u8 = 18;

/// ISO 4217 codes whose minor unit is "N.A.": precious metals, bond-market units, SDRs and the
/// like, the testing code and "no currency". They count in whatever scale the operator names.
pub const NO_MINOR_UNIT: &[&str] =
    &["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"];

/// ISO 4217 active codes with their minor units (SIX list one), fund codes (BOV, CHE, CLF, ...)
/// included: no custom asset may take one of them.
const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Why an asset or amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The code is not three upper-case letters of an active ISO 4217 currency.
    #[error("asset code {0:?} is not an active ISO 4217 currency code")]
    AssetCodeUnknown(String),
    /// The code is neither an ISO 4217 code nor shaped as a custom asset's (three upper-case
    /// letters A to Z).
    #[error(
        "asset code {0:?} is neither an ISO 4217 code nor a custom asset code (three letters A-Z, registered by the operator)"
    )]
    AssetCodeMalformed(String),
    /// A custom asset may not take an ISO 4217 code.
    #[error("{0} is an ISO 4217 code: use it as it is (a custom asset needs a code ISO 4217 does not list)")]
    AssetCodeIsIso(String),
    /// The scale is finer than 10^-18 or coarser than the currency's minor unit.
    #[error("asset scale {scale} for {code} must be between {min} (its minor unit) and {max}")]
    AssetScaleOutOfRange {
        /// The currency code.
        code: String,
        /// The scale given.
        scale: u8,
        /// The currency's ISO 4217 minor unit.
        min: u8,
        /// [`SCALE_MAX`].
        max: u8,
    },
    /// The amount text is not a plain string of decimal digits.
    #[error("amount must be a string of decimal digits without sign, exponent, point or leading zeros")]
    AmountSyntax,
    /// The amount does not fit in the allowed integer width.
    #[error("amount does not fit in {bits} bits")]
    AmountOverflow {
        /// The width that was exceeded.
        bits: u32,
    },
}

/// A currency at a scale: `value` fields count 10^-scale units of `code`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asset {
    code: [u8; 3],
    scale: u8,
}

impl Asset {
    /// Checks `code` against ISO 4217 and `scale` against the currency's minor unit and
    /// [`SCALE_MAX`].
    pub fn new(code: &str, scale: u8) -> Result<Asset, MoneyError> {
        // Codes without a minor unit (gold, SDRs, ...) take any scale the operator counts in.
        let minor_unit = match minor_unit(code) {
            Some(unit) => unit,
            None if NO_MINOR_UNIT.contains(&code) => 0,
            None => return Err(MoneyError::AssetCodeUnknown(code.into())),
        };
        if scale < minor_unit || scale > SCALE_MAX {
            return Err(MoneyError::AssetScaleOutOfRange { code: code.into(), scale, min: minor_unit, max: SCALE_MAX });
        }
        let code_bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| MoneyError::AssetCodeUnknown(code.into()))?;
        Ok(Asset { code: code_bytes, scale })
    }

    /// A custom asset (in-game gems, credits, points): a code of three letters A to Z that ISO
    /// 4217 does not list, at `scale` up to [`SCALE_MAX`]. Whether the operator registered it,
    /// and from which scale, is the application's to check before an account takes it.
    pub fn custom(code: &str, scale: u8) -> Result<Asset, MoneyError> {
        if minor_unit(code).is_some() || NO_MINOR_UNIT.contains(&code) {
            return Err(MoneyError::AssetCodeIsIso(code.into()));
        }
        let code_bytes: [u8; 3] =
            code.as_bytes().try_into().map_err(|_| MoneyError::AssetCodeMalformed(code.into()))?;
        if !code_bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::AssetCodeMalformed(code.into()));
        }
        if scale > SCALE_MAX {
            return Err(MoneyError::AssetScaleOutOfRange { code: code.into(), scale, min: 0, max: SCALE_MAX });
        }
        Ok(Asset { code: code_bytes, scale })
    }

    /// An ISO 4217 asset as [`Asset::new`] checks it, or else a custom one as
    /// [`Asset::custom`] does.
    pub fn parse(code: &str, scale: u8) -> Result<Asset, MoneyError> {
        match Asset::new(code, scale) {
            Err(MoneyError::AssetCodeUnknown(_)) => Asset::custom(code, scale),
            other => other,
        }
    }

    /// Whether the code is ISO 4217's (else it is a custom asset's).
    pub fn is_iso(&self) -> bool {
        minor_unit(self.code()).is_some() || NO_MINOR_UNIT.contains(&self.code())
    }

    /// Rebuilds an asset from its 4-byte wire form (3 code bytes, then the scale), checking it
    /// as [`Asset::parse`] does.
    pub fn from_bytes(bytes: [u8; 4]) -> Result<Asset, MoneyError> {
        let code = std::str::from_utf8(&bytes[..3])
            .map_err(|_| MoneyError::AssetCodeMalformed(format!("{:?}", &bytes[..3])))?;
        Asset::parse(code, bytes[3])
    }

    /// The 4-byte wire form.
    pub fn to_bytes(self) -> [u8; 4] {
        [self.code[0], self.code[1], self.code[2], self.scale]
    }

    /// The ISO 4217 code, e.g. `"EUR"`.
    pub fn code(&self) -> &str {
        // The constructor accepted only codes from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// How many decimal places a unit of this asset is below one whole currency unit.
    pub fn scale(&self) -> u8 {
        self.scale
    }
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.code(), self.scale)
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.code(), self.scale)
    }
}

/// The ISO 4217 minor unit of an active currency code, or `None` for anything else.
pub fn minor_unit(code: &str) -> Option<u8> {
    if NO_MINOR_UNIT.contains(&code) {
        return None;
    }
    ISO_4217
        .binary_search_by(|(known, _)| (*known).cmp(code))
        .ok()
        .and_then(|index| ISO_4217.get(index))
        .map(|(_, unit)| *unit)
}

/// An exact count of 10^-scale units of some asset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Amount(pub u128);

impl Amount {
    /// Parses a canonical decimal digit string: no sign, exponent, point, blanks or leading
    /// zeros ("0" itself is fine), at most u128::MAX.
    pub fn parse(text: &str) -> Result<Amount, MoneyError> {
        parse_digits(text).map(Amount)
    }

    /// Parses like [`Amount::parse`] but also refuses values above u64::MAX, for standards that
    /// carry amounts as 64-bit integers.
    pub fn parse_u64(text: &str) -> Result<Amount, MoneyError> {
        let amount = Amount::parse(text)?;
        if amount.0 > u128::from(u64::MAX) {
            return Err(MoneyError::AmountOverflow { bits: 64 });
        }
        Ok(amount)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` when `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a canonical unsigned decimal string into a u128 (used for amounts and ids alike).
pub fn parse_digits(text: &str) -> Result<u128, MoneyError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(MoneyError::AmountSyntax);
    }
    if bytes.len() > 1 && bytes.first() == Some(&b'0') {
        return Err(MoneyError::AmountSyntax);
    }
    let mut value: u128 = 0;
    for digit in bytes {
        value = value
            .checked_mul(10)
            .and_then(|shifted| shifted.checked_add(u128::from(digit - b'0')))
            .ok_or(MoneyError::AmountOverflow { bits: 128 })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iso_table_is_sorted_so_lookup_can_bisect() {
        assert!(ISO_4217.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn scales_are_bounded_by_the_minor_unit_and_eighteen() {
        assert!(Asset::new("KRW", 0).is_ok());
        assert!(Asset::new("EUR", 2).is_ok());
        assert!(Asset::new("EUR", 3).is_ok());
        assert!(Asset::new("USD", 9).is_ok());
        assert!(Asset::new("USD", 18).is_ok());
        assert!(matches!(Asset::new("USD", 19), Err(MoneyError::AssetScaleOutOfRange { .. })));
        assert!(matches!(Asset::new("EUR", 1), Err(MoneyError::AssetScaleOutOfRange { .. })));
        assert!(matches!(Asset::new("BHD", 2), Err(MoneyError::AssetScaleOutOfRange { .. })));
        assert!(matches!(Asset::new("CLF", 3), Err(MoneyError::AssetScaleOutOfRange { .. })));
    }

    #[test]
    fn unknown_and_malformed_codes_are_refused() {
        for code in ["", "usd", "US", "USDX", "XYZ", "ZZZ", "€"] {
            assert!(matches!(Asset::new(code, 2), Err(MoneyError::AssetCodeUnknown(_))), "{code}");
        }
    }

    #[test]
    fn codes_without_a_minor_unit_take_any_scale() {
        for code in NO_MINOR_UNIT {
            assert_eq!(minor_unit(code), None, "{code}");
            for scale in [0, 6, SCALE_MAX] {
                assert_eq!(Asset::new(code, scale).map(|a| a.scale), Ok(scale), "{code}/{scale}");
            }
        }
        assert!(ISO_4217.iter().all(|(code, _)| !NO_MINOR_UNIT.contains(code)));
    }

    #[test]
    fn asset_bytes_round_trip() {
        let asset = Asset::new("JOD", 5).unwrap();
        assert_eq!(Asset::from_bytes(asset.to_bytes()).unwrap(), asset);
        let gems = Asset::custom("GEM", 0).unwrap();
        assert_eq!(Asset::from_bytes(gems.to_bytes()).unwrap(), gems);
        assert!(!gems.is_iso() && asset.is_iso());
        assert!(Asset::from_bytes([0, 0, 0, 0]).is_err());
        assert!(Asset::from_bytes(*b"gem\0").is_err());
    }

    #[test]
    fn custom_assets_take_codes_iso_does_not_list() {
        assert_eq!(Asset::custom("GEM", 0).map(|a| (a.code().to_string(), a.scale())), Ok(("GEM".into(), 0)));
        assert_eq!(Asset::parse("PTS", 2).map(|a| a.is_iso()), Ok(false));
        assert_eq!(Asset::parse("USD", 2).map(|a| a.is_iso()), Ok(true));
        for iso in ["USD", "XAU", "XTS", "BOV", "CHE", "CHW", "COU", "MXV", "USN", "UYW", "CLF", "UYI"] {
            assert!(matches!(Asset::custom(iso, 2), Err(MoneyError::AssetCodeIsIso(_))), "{iso}");
        }
        for malformed in ["", "gem", "GE", "GEMS", "G3M", "€"] {
            assert!(matches!(Asset::parse(malformed, 0), Err(MoneyError::AssetCodeMalformed(_))), "{malformed}");
        }
        assert!(matches!(Asset::custom("GEM", 19), Err(MoneyError::AssetScaleOutOfRange { .. })));
        // An ISO code keeps its own rules: below the minor unit is refused, not made custom.
        assert!(matches!(Asset::parse("EUR", 1), Err(MoneyError::AssetScaleOutOfRange { .. })));
    }

    #[test]
    fn amounts_are_canonical_digit_strings() {
        assert_eq!(Amount::parse("0"), Ok(Amount(0)));
        assert_eq!(Amount::parse("1234"), Ok(Amount(1234)));
        assert_eq!(Amount::parse("340282366920938463463374607431768211455"), Ok(Amount(u128::MAX)));
        for bad in ["", "-1", "+1", "1e3", "0x10", "1.5", " 1", "1 ", "01", "１"] {
            assert_eq!(Amount::parse(bad), Err(MoneyError::AmountSyntax), "{bad:?}");
        }
        assert_eq!(
            Amount::parse("340282366920938463463374607431768211456"),
            Err(MoneyError::AmountOverflow { bits: 128 })
        );
    }

    #[test]
    fn u64_bounded_amounts_refuse_two_to_the_sixty_four() {
        assert_eq!(Amount::parse_u64("18446744073709551615"), Ok(Amount(u128::from(u64::MAX))));
        assert_eq!(Amount::parse_u64("18446744073709551616"), Err(MoneyError::AmountOverflow { bits: 64 }));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount(u128::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(0).checked_sub(Amount(1)), None);
        assert_eq!(Amount(2).checked_add(Amount(3)), Some(Amount(5)));
    }
}
