//! The one API error type and its RFC 9457 problem+json rendering.
//!
//! Every failure a client can cause maps to a 4xx with a stable machine `code`; 5xx bodies carry
//! only a request id (the detail goes to the log). The status mapping is a single exhaustive
//! match: a new ledger result code cannot compile until it picks a status.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use obol_core::identity::IdentityResult;
use obol_core::ledger::{CreateAccountResult, CreateTransferResult};
use obol_store::EngineError;
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Serialize, ToSchema, Debug)]
pub struct Problem {
    /// A URI naming the problem type: `urn:obol:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a person.
    pub detail: String,
    /// Stable machine code (snake_case); clients switch on this.
    pub code: String,
    /// Set on 5xx: quote it when reporting the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// With `requires_action`: what to approve and how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<crate::mfa::ChallengeDto>,
    /// With `factor_check_failed`: tries left before factor checks lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u8>,
    /// With `risk_blocked`: the decision and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::risk::RiskDto>,
    /// With `held_for_review` (status 202): the review that holds the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::risk::ReviewDto>,
}

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON.
    #[error("the body is not valid JSON: {0}")]
    JsonSyntax(String),
    /// The JSON does not match the schema (wrong types, unknown or missing fields).
    #[error("the body does not match the schema: {0}")]
    JsonData(String),
    /// The request has no JSON content type.
    #[error("expected Content-Type: application/json")]
    ContentType,
    /// The body is larger than the limit.
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// An id field is not a canonical decimal u128.
    #[error("{field} must be a decimal string of an integer from 1 to 2^128-2: {reason}")]
    InvalidId {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// An amount is not a canonical decimal u128.
    #[error("{field}: {reason}")]
    InvalidAmount {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Asset code or scale invalid.
    #[error("{0}")]
    InvalidAsset(String),
    /// A flag name obol does not know.
    #[error("unknown flag {0:?}")]
    InvalidFlag(String),
    /// A query parameter is out of range.
    #[error("{0}")]
    InvalidQuery(String),
    /// A batch with no events or too many.
    #[error("a batch holds 1 to {max} events, not {got}")]
    BatchSize {
        /// Events in the request.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// No such account.
    #[error("account {0} does not exist")]
    AccountNotFound(u128),
    /// No such transfer.
    #[error("transfer {0} does not exist")]
    TransferNotFound(u128),
    /// No such route.
    #[error("no route for this path")]
    RouteNotFound,
    /// The path exists but not with this method.
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// Missing or wrong API key.
    #[error("a valid API key is required: send Authorization: Bearer <key>")]
    Unauthorized,
    /// Authenticated, but this caller may not do this.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The caller's principal is suspended.
    #[error("this principal is suspended; ask the operator to reactivate it")]
    PrincipalSuspended,
    /// No such principal (or not visible to this caller).
    #[error("principal {0} does not exist")]
    PrincipalNotFound(u128),
    /// No such device (or not visible to this caller).
    #[error("device {0} does not exist")]
    DeviceNotFound(u128),
    /// A signed request was refused.
    #[error("{0}")]
    Signature(crate::httpsig::SigError),
    /// The operation needs step-up approval first.
    #[error(
        "this payment needs your approval: approve the challenge with a second factor, then resend the request with the header Obol-Approval: <challenge id>"
    )]
    RequiresAction(Box<crate::mfa::ChallengeDto>),
    /// The risk policy refuses this payment.
    #[error("this payment is refused: {}", .0.reason_en)]
    RiskBlocked(Box<crate::risk::RiskDto>),
    /// The risk policy holds this request for an analyst (answered 202: not an error, not done).
    #[error("this request is held for review and runs only if an analyst approves it: {}", .0.risk.reason_en)]
    HeldForReview(Box<crate::risk::ReviewDto>),
    /// The tab is paused until an analyst decides its review.
    #[error("tab {0} is paused for review {1}; it accepts no payments until an analyst approves")]
    TabPaused(u128, String),
    /// No review with that id.
    #[error("review {0} not found")]
    ReviewNotFound(String),
    /// The review was decided already.
    #[error("review {0} was {1} already")]
    ReviewDecided(String, String),
    /// The request was held for review and an analyst declined it: it never runs.
    #[error("this payment was held for review {0} and declined; it will not run")]
    ReviewDeclined(String),
    /// A policy bundle was refused; the live policy is unchanged.
    #[error("the bundle was refused and the live policy is unchanged: {0}")]
    PolicyRefused(String),
    /// No shadow run is going on.
    #[error("no candidate policy runs in shadow; submit one with POST /v1/risk/policy?shadow=true")]
    NoShadow,
    /// A second-factor check failed (which factor is never said).
    #[error("the code was not accepted; {attempts_left} attempts left before checks are locked")]
    FactorCheckFailed {
        /// Tries left.
        attempts_left: u8,
    },
    /// A passkey's signature counter went backwards; it was disabled.
    #[error(
        "this passkey looks copied (its signature counter went backwards) and was disabled; use another factor and register the passkey again"
    )]
    PasskeyCloneSuspected,
    /// No such tab (or not visible to this caller).
    #[error("tab {0} does not exist")]
    TabNotFound(u128),
    /// A tab with this id exists.
    #[error("tab {0} exists already")]
    TabExists(u128),
    /// Something the caller may not see holds this id: which fields differ is not said, so
    /// nobody learns another's accounts or amounts by probing ids.
    #[error("id {0} is taken; choose another")]
    IdTaken(u128),
    /// The tab refused a payment.
    #[error("{0}")]
    TabRejected(obol_core::channel::PayReject),
    /// No such open challenge for this caller.
    #[error("challenge {0} does not exist, has expired or was already used")]
    ChallengeNotFound(String),
    /// A device tried to exceed a limit its holder set.
    #[error("{0}")]
    DeviceLimit(String),
    /// No such API key (or not visible to this caller).
    #[error("API key {0} does not exist")]
    KeyNotFound(String),
    /// A field has a value obol does not accept.
    #[error("{0}")]
    InvalidField(String),
    /// A signature was made for another obol server's network (or for none).
    #[error("{0}")]
    WrongNetwork(String),
    /// The registry refused an identity change.
    #[error("not done: {}", .0.as_str())]
    IdentityRejected(IdentityResult),
    /// The ledger refused an account.
    #[error("the account was not created: {}", .0.as_str())]
    AccountRejected(CreateAccountResult),
    /// The ledger refused a transfer.
    #[error("the transfer was not created: {}", .0.as_str())]
    TransferRejected(CreateTransferResult),
    /// Too many requests; retry after the given seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// The writer queue is full.
    #[error("the ledger is busy; retry in a second")]
    Overloaded,
    /// The ledger stopped after a storage failure.
    #[error("the ledger is unavailable")]
    Unavailable,
    /// The request took longer than the limit.
    #[error("the request took longer than {0} ms")]
    Timeout(u64),
    /// A bug or an unexpected failure; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Overloaded => ApiError::Overloaded,
            EngineError::Stopped => ApiError::Unavailable,
            EngineError::Meta(detail) => ApiError::Internal(detail),
            EngineError::Unencodable(error) => ApiError::InvalidField(error.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::JsonSyntaxError(error) => ApiError::JsonSyntax(error.body_text()),
            JsonRejection::JsonDataError(error) => ApiError::JsonData(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::ContentType,
            JsonRejection::BytesRejection(_) => ApiError::BodyTooLarge(crate::BODY_BYTES_MAX),
            other => ApiError::JsonData(other.body_text()),
        }
    }
}

impl ApiError {
    /// The HTTP status; one exhaustive mapping.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::JsonSyntax(_)
            | ApiError::JsonData(_)
            | ApiError::InvalidId { .. }
            | ApiError::InvalidAmount { .. }
            | ApiError::InvalidAsset(_)
            | ApiError::InvalidFlag(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidField(_)
            | ApiError::WrongNetwork(_)
            | ApiError::BatchSize { .. } => StatusCode::BAD_REQUEST,
            ApiError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AccountNotFound(_)
            | ApiError::TransferNotFound(_)
            | ApiError::RouteNotFound
            | ApiError::PrincipalNotFound(_)
            | ApiError::DeviceNotFound(_)
            | ApiError::KeyNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Signature(error) => signature_status(error),
            ApiError::DeviceLimit(_) | ApiError::RequiresAction(_) | ApiError::FactorCheckFailed { .. } => {
                StatusCode::FORBIDDEN
            }
            ApiError::RiskBlocked(_) | ApiError::TabPaused(..) => StatusCode::FORBIDDEN,
            ApiError::HeldForReview(_) => StatusCode::ACCEPTED,
            ApiError::ReviewNotFound(_) | ApiError::NoShadow => StatusCode::NOT_FOUND,
            ApiError::ReviewDecided(..) => StatusCode::CONFLICT,
            ApiError::ReviewDeclined(_) => StatusCode::FORBIDDEN,
            ApiError::PolicyRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ChallengeNotFound(_) | ApiError::TabNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TabExists(_) | ApiError::IdTaken(_) => StatusCode::CONFLICT,
            ApiError::TabRejected(reject) => pay_reject_status(*reject),
            ApiError::PasskeyCloneSuspected => StatusCode::FORBIDDEN,
            ApiError::Forbidden(_) | ApiError::PrincipalSuspended => StatusCode::FORBIDDEN,
            ApiError::IdentityRejected(result) => identity_status(*result),
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AccountRejected(result) => account_status(*result),
            ApiError::TransferRejected(result) => transfer_status(*result),
            ApiError::Overloaded | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::JsonSyntax(_) => "json_syntax",
            ApiError::JsonData(_) => "json_schema",
            ApiError::ContentType => "unsupported_media_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::InvalidId { .. } => "invalid_id",
            ApiError::InvalidAmount { .. } => "invalid_amount",
            ApiError::InvalidAsset(_) => "invalid_asset",
            ApiError::InvalidFlag(_) => "invalid_flag",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::BatchSize { .. } => "batch_size",
            ApiError::AccountNotFound(_) => "account_not_found",
            ApiError::TransferNotFound(_) => "transfer_not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PrincipalSuspended => "principal_suspended",
            ApiError::PrincipalNotFound(_) => "principal_not_found",
            ApiError::KeyNotFound(_) => "key_not_found",
            ApiError::DeviceNotFound(_) => "device_not_found",
            ApiError::Signature(error) => error.code(),
            ApiError::DeviceLimit(_) => "device_limit_exceeded",
            ApiError::RequiresAction(_) => "requires_action",
            ApiError::RiskBlocked(_) => "risk_blocked",
            ApiError::HeldForReview(_) => "held_for_review",
            ApiError::TabPaused(..) => "tab_paused_for_review",
            ApiError::ReviewNotFound(_) => "review_not_found",
            ApiError::ReviewDecided(..) => "review_decided",
            ApiError::ReviewDeclined(_) => "review_declined",
            ApiError::PolicyRefused(_) => "policy_refused",
            ApiError::NoShadow => "no_shadow",
            ApiError::FactorCheckFailed { .. } => "factor_check_failed",
            ApiError::ChallengeNotFound(_) => "challenge_not_found",
            ApiError::TabNotFound(_) => "tab_not_found",
            ApiError::TabExists(_) => "tab_exists",
            ApiError::IdTaken(_) => "id_taken",
            ApiError::TabRejected(reject) => pay_reject_code(*reject),
            ApiError::PasskeyCloneSuspected => "passkey_clone_suspected",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::WrongNetwork(_) => "invalid_network",
            ApiError::IdentityRejected(result) => result.as_str(),
            ApiError::AccountRejected(result) => result.as_str(),
            ApiError::TransferRejected(result) => result.as_str(),
            ApiError::Overloaded => "overloaded",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

fn pay_reject_status(reject: obol_core::channel::PayReject) -> StatusCode {
    use obol_core::channel::PayReject as P;
    match reject {
        P::BadSignature | P::WrongTab | P::WrongPayee | P::BadPreimage | P::SkipTooFar => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        P::DeviceInactive | P::DeviceLimit => StatusCode::FORBIDDEN,
        P::TabClosed
        | P::TabExpired
        | P::NotIncreasing
        | P::Stale
        | P::BeyondEscrow
        | P::NoCommitment
        | P::BeyondChain => StatusCode::CONFLICT,
    }
}

fn pay_reject_code(reject: obol_core::channel::PayReject) -> &'static str {
    use obol_core::channel::PayReject as P;
    match reject {
        P::BadSignature => "voucher_signature_invalid",
        P::WrongTab => "voucher_wrong_tab",
        P::WrongPayee => "voucher_wrong_payee",
        P::TabClosed => "tab_closed",
        P::TabExpired => "tab_expired",
        P::NotIncreasing => "voucher_not_increasing",
        P::Stale => "voucher_stale",
        P::BeyondEscrow => "beyond_escrow",
        P::NoCommitment => "payword_not_committed",
        P::BadPreimage => "payword_bad_preimage",
        P::BeyondChain => "payword_beyond_chain",
        P::SkipTooFar => "payword_skip_too_far",
        P::DeviceInactive => "tab_device_inactive",
        P::DeviceLimit => "device_limit_exceeded",
    }
}

fn signature_status(error: &crate::httpsig::SigError) -> StatusCode {
    use crate::httpsig::SigError as E;
    match error {
        E::Malformed(_) | E::ComponentMissing(_) | E::ComponentUnavailable(_) | E::AlgorithmUnsupported => {
            StatusCode::BAD_REQUEST
        }
        E::DigestMissing | E::DigestMismatch => StatusCode::BAD_REQUEST,
        E::CreatedInFuture | E::Expired | E::Replayed | E::UnknownKey | E::Invalid => StatusCode::UNAUTHORIZED,
        E::DeviceInactive(_) => StatusCode::FORBIDDEN,
    }
}

fn identity_status(result: IdentityResult) -> StatusCode {
    use IdentityResult as R;
    match result {
        R::Ok | R::Exists => StatusCode::OK,
        R::ExistsWithDifferentFields | R::KidInUse | R::AlreadyRevoked => StatusCode::CONFLICT,
        R::PrincipalNotFound | R::KeyNotFound | R::DeviceNotFound => StatusCode::NOT_FOUND,
        R::IdReserved | R::FieldLength | R::NotAHolder | R::StatusNotAllowed | R::FactorNotEnrolled => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        R::CodeReused | R::FactorLocked | R::DeviceDayLimitExceeded => StatusCode::FORBIDDEN,
    }
}

fn account_status(result: CreateAccountResult) -> StatusCode {
    use CreateAccountResult as R;
    match result {
        R::Ok | R::Exists => StatusCode::OK,
        R::ExistsWithDifferentFlags
        | R::ExistsWithDifferentUserData128
        | R::ExistsWithDifferentUserData64
        | R::ExistsWithDifferentUserData32
        | R::ExistsWithDifferentAsset
        | R::ExistsWithDifferentCode
        | R::ExistsWithDifferentOwner => StatusCode::CONFLICT,
        R::LinkedEventFailed
        | R::LinkedEventChainOpen
        | R::ReservedFlag
        | R::IdMustNotBeZero
        | R::IdMustNotBeIntMax
        | R::FlagsAreMutuallyExclusive
        | R::CodeMustNotBeZero => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn transfer_status(result: CreateTransferResult) -> StatusCode {
    use CreateTransferResult as R;
    match result {
        R::Ok | R::Exists => StatusCode::OK,
        R::ExistsWithDifferentFlags
        | R::ExistsWithDifferentDebitAccountId
        | R::ExistsWithDifferentCreditAccountId
        | R::ExistsWithDifferentAmount
        | R::ExistsWithDifferentPendingId
        | R::ExistsWithDifferentUserData128
        | R::ExistsWithDifferentUserData64
        | R::ExistsWithDifferentUserData32
        | R::ExistsWithDifferentTimeout
        | R::ExistsWithDifferentAsset
        | R::ExistsWithDifferentCode
        | R::PendingTransferAlreadyPosted
        | R::PendingTransferAlreadyVoided
        | R::PendingTransferExpired => StatusCode::CONFLICT,
        R::LinkedEventFailed
        | R::LinkedEventChainOpen
        | R::ReservedFlag
        | R::IdMustNotBeZero
        | R::IdMustNotBeIntMax
        | R::FlagsAreMutuallyExclusive
        | R::DebitAccountIdMustNotBeZero
        | R::DebitAccountIdMustNotBeIntMax
        | R::CreditAccountIdMustNotBeZero
        | R::CreditAccountIdMustNotBeIntMax
        | R::AccountsMustBeDifferent
        | R::PendingIdMustBeZero
        | R::PendingIdMustNotBeZero
        | R::PendingIdMustNotBeIntMax
        | R::PendingIdMustBeDifferent
        | R::TimeoutReservedForPendingTransfer
        | R::ClosingTransferMustBePending
        | R::AssetMustBeSet
        | R::CodeMustNotBeZero
        | R::DebitAccountNotFound
        | R::CreditAccountNotFound
        | R::AccountsMustHaveTheSameAsset
        | R::TransferMustHaveTheSameAssetAsAccounts
        | R::PendingTransferNotFound
        | R::PendingTransferNotPending
        | R::PendingTransferHasDifferentDebitAccountId
        | R::PendingTransferHasDifferentCreditAccountId
        | R::PendingTransferHasDifferentAsset
        | R::PendingTransferHasDifferentCode
        | R::ExceedsPendingTransferAmount
        | R::PendingTransferHasDifferentAmount
        | R::DebitAccountAlreadyClosed
        | R::CreditAccountAlreadyClosed
        | R::OverflowsDebitsPending
        | R::OverflowsCreditsPending
        | R::OverflowsDebitsPosted
        | R::OverflowsCreditsPosted
        | R::OverflowsDebits
        | R::OverflowsCredits
        | R::OverflowsTimeout
        | R::ExceedsCredits
        | R::ExceedsDebits
        | R::CodeReservedForTabs => StatusCode::UNPROCESSABLE_ENTITY,
        R::PendingTransferBelongsToTab | R::DeviceLimitExceeded => StatusCode::FORBIDDEN,
    }
}

/// A request id for 5xx responses, unique within the process.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(rand::random::<u32>);
    format!("{prefix:08x}-{:012x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (detail, request_id) = if status.is_server_error() {
            let id = request_id();
            match &self {
                ApiError::Internal(detail) => tracing::error!(request_id = %id, %detail, "internal error"),
                other => tracing::warn!(request_id = %id, error = %other, "request not served"),
            }
            (self.to_string(), Some(id))
        } else {
            (self.to_string(), None)
        };
        let problem = Problem {
            type_uri: format!("urn:obol:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            request_id,
            challenge: match &self {
                ApiError::RequiresAction(challenge) => Some((**challenge).clone()),
                _ => None,
            },
            attempts_left: match &self {
                ApiError::FactorCheckFailed { attempts_left } => Some(*attempts_left),
                _ => None,
            },
            risk: match &self {
                ApiError::RiskBlocked(risk) => Some((**risk).clone()),
                _ => None,
            },
            review: match &self {
                ApiError::HeldForReview(review) => Some((**review).clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let ApiError::HeldForReview(review) = &self
            && let Ok(value) = HeaderValue::from_str(&format!("/v1/risk/reviews/{}", review.id))
        {
            response.headers_mut().insert(header::LOCATION, value);
        }
        if matches!(self, ApiError::Overloaded) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited(wait_s) = &self
            && let Ok(value) = HeaderValue::from_str(&wait_s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
