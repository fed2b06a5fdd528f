//! The x402 v2 envelope as obol speaks it: `PAYMENT-REQUIRED` (what a priced route asks),
//! `PAYMENT-SIGNATURE` (what the client pays with), `PAYMENT-RESPONSE` (what was taken), the
//! facilitator's verify and settle bodies, and the base64 JSON header codec. The server
//! (obol-http) and the clients (obol-client, the fuzz targets) share these types, so what one
//! sends the other reads.

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

/// The protocol version obol speaks.
pub const X402_VERSION: u32 = 2;
/// Scheme: signed cumulative vouchers into a tab.
pub const SCHEME_VOUCHER: &str = "obol-voucher";
/// Scheme: PayWord ticks into a tab.
pub const SCHEME_PAYWORD: &str = "obol-payword";
/// Scheme: one device-signed ledger transfer.
pub const SCHEME_EXACT: &str = "exact";
/// Every scheme obol accepts.
pub const SCHEMES: [&str; 3] = [SCHEME_VOUCHER, SCHEME_PAYWORD, SCHEME_EXACT];
/// Longest `PAYMENT-SIGNATURE` header read.
pub const PAYMENT_HEADER_BYTES_MAX: usize = 8 * 1024;

/// What a paid resource is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Absolute URL of the resource.
    pub url: String,
    /// What it is, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One way to pay for a resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// `obol-voucher`, `obol-payword` or `exact`.
    pub scheme: String,
    /// `obol:<instance-id>` (CAIP-2 form).
    pub network: String,
    /// Price in minor units of the asset, decimal digits.
    pub amount: String,
    /// ISO 4217 code.
    pub asset: String,
    /// The payee account id, decimal.
    pub pay_to: String,
    /// How long a payment may take, seconds.
    pub max_timeout_seconds: u64,
    /// `assetScale`: the asset's scale (minor units per major unit = 10^scale).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The body of `PAYMENT-REQUIRED`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why the last payment failed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: ResourceInfo,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirements>,
}

/// The body of `PAYMENT-SIGNATURE`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2.
    pub x402_version: u32,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The offer the client chose, as it was offered.
    pub accepted: PaymentRequirements,
    /// The scheme's proof of payment.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// Extensions, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extensions: Option<serde_json::Value>,
}

/// The body of `PAYMENT-SIGNATURE` as a priced route reads it: the offer the client accepted and
/// the scheme's payload left as JSON text, so the offer can be matched by its bytes (clients echo
/// it as offered) and the payload read straight into its scheme's type; nothing else is built.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadText<'a> {
    /// Always 2.
    pub x402_version: u32,
    /// The offer the client chose, as JSON text.
    #[serde(borrow)]
    pub accepted: &'a serde_json::value::RawValue,
    /// The scheme's proof of payment, as JSON text.
    #[serde(borrow)]
    pub payload: &'a serde_json::value::RawValue,
}

/// The body of `PAYMENT-RESPONSE`, and the facilitator's settle answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    /// Whether the payment was taken.
    pub success: bool,
    /// Why not (an obol problem code), if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// The paying account, decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// What records the payment: `tab:<id>:<cumulative>` or `transfer:<id>` ("" on failure).
    pub transaction: String,
    /// The network.
    pub network: String,
    /// What the payment added, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The facilitator's verify answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would be taken now.
    pub is_valid: bool,
    /// Why not, if not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// The paying account, decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A facilitator request: a payment and the requirements it must meet.
#[derive(Deserialize, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    /// Always 2.
    #[serde(default = "default_version")]
    pub x402_version: u32,
    /// The client's payment.
    pub payment_payload: PaymentPayload,
    /// What the resource server asks.
    pub payment_requirements: PaymentRequirements,
}

fn default_version() -> u32 {
    X402_VERSION
}

/// One scheme and network the facilitator handles.
#[derive(Serialize, Deserialize, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Always 2.
    pub x402_version: u32,
    /// The scheme.
    pub scheme: String,
    /// The network.
    pub network: String,
}

/// What the facilitator handles.
#[derive(Serialize, Deserialize, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Supported {
    /// Schemes and networks.
    pub kinds: Vec<SupportedKind>,
    /// Extension ids (none).
    pub extensions: Vec<String>,
    /// Signers by network pattern (obol signs nothing on-chain: none).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub signers: serde_json::Map<String, serde_json::Value>,
}

/// Encodes a header value: standard base64 (with padding) of the JSON text.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Base64::encode_string(&json)
}

/// Decodes a header value: base64 (standard or URL-safe, padded or not) of a JSON document.
pub fn decode_header<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let bytes = decode_header_bytes(text)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the header is not the expected JSON: {e}"))
}

/// The base64 half of [`decode_header`]: the JSON text of a header value, as bytes.
pub fn decode_header_bytes(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() > PAYMENT_HEADER_BYTES_MAX {
        return Err(format!("the header is longer than {PAYMENT_HEADER_BYTES_MAX} bytes"));
    }
    Base64::decode_vec(text)
        .or_else(|_| Base64Unpadded::decode_vec(text))
        .or_else(|_| Base64Url::decode_vec(text))
        .or_else(|_| Base64UrlUnpadded::decode_vec(text))
        .map_err(|_| "the header is not base64".to_string())
}
