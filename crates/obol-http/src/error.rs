//! The one API error type and its RFC 9457 problem+json rendering.
//!
//! Every failure a client can cause maps to a 4xx with a stable machine `code`; 5xx bodies carry
//! only a request id (the detail goes to the log). The status mapping is a single exhaustive
//! match: a new ledger result code cannot compile until it picks a status.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use obol_app::error::Error;
use obol_core::identity::IdentityResult;
use obol_core::ledger::{CreateAccountResult, CreateTransferResult};
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
    pub challenge: Option<obol_app::stepup::ChallengeDto>,
    /// With `factor_check_failed`: tries left before factor checks lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u8>,
    /// With `risk_blocked`: the decision and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<obol_app::risk::RiskDto>,
    /// With `held_for_review` (status 202): the review that holds the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<obol_app::risk::ReviewDto>,
    /// What happened and why, and what to do next, in plain words, per language (`en`, `ko`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub explanation: obol_app::explain::Explanation,
}

/// An [`Error`] on its way to the client: rendered as a problem document with the status the
/// one mapping below gives it.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError(error)
    }
}

impl From<obol_store::EngineError> for ApiError {
    fn from(error: obol_store::EngineError) -> ApiError {
        ApiError(error.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError(json_rejection(rejection))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A body axum could not read as JSON, as the error it is.
pub fn json_rejection(rejection: JsonRejection) -> Error {
    {
        match rejection {
            JsonRejection::JsonSyntaxError(error) => Error::JsonSyntax(error.body_text()),
            JsonRejection::JsonDataError(error) => Error::JsonData(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => Error::ContentType,
            JsonRejection::BytesRejection(_) => Error::BodyTooLarge(crate::BODY_BYTES_MAX),
            other => Error::JsonData(other.body_text()),
        }
    }
}

impl ApiError {
    /// The HTTP status; one exhaustive mapping.
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Error::JsonSyntax(_)
            | Error::JsonData(_)
            | Error::InvalidId { .. }
            | Error::InvalidAmount { .. }
            | Error::InvalidAsset(_)
            | Error::InvalidFlag(_)
            | Error::InvalidQuery(_)
            | Error::InvalidField(_)
            | Error::WrongNetwork(_)
            | Error::BatchSize { .. } => StatusCode::BAD_REQUEST,
            Error::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::AccountNotFound(_)
            | Error::TransferNotFound(_)
            | Error::RouteNotFound
            | Error::PrincipalNotFound(_)
            | Error::DeviceNotFound(_)
            | Error::KeyNotFound(_) => StatusCode::NOT_FOUND,
            Error::Signature(error) => signature_status(error),
            Error::DeviceLimit(_) | Error::RequiresAction(_) | Error::FactorCheckFailed { .. } => StatusCode::FORBIDDEN,
            Error::RiskBlocked(_) | Error::TabPaused(..) => StatusCode::FORBIDDEN,
            Error::HeldForReview(_) => StatusCode::ACCEPTED,
            Error::ReviewNotFound(_)
            | Error::NoShadow
            | Error::NoModel
            | Error::PasskeyNotFound(_)
            | Error::AuditNotFound(_) => StatusCode::NOT_FOUND,
            Error::ConsentRequired(..) | Error::PersonalDataRestricted(..) => StatusCode::FORBIDDEN,
            Error::PersonalDataErased(_) => StatusCode::GONE,
            Error::RefundExceedsPayment { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::DisputeNotFound(_) | Error::WebhookNotFound(_) => StatusCode::NOT_FOUND,
            Error::DisputeExceedsPayment { .. } | Error::DisputeWindowClosed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::DisputeClosed { .. } | Error::DisputeCreditSpent { .. } => StatusCode::CONFLICT,
            Error::ReviewDecided(..) => StatusCode::CONFLICT,
            Error::ReviewDeclined(_) => StatusCode::FORBIDDEN,
            Error::ReviewRefused(..) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::PolicyRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::ChallengeNotFound(_) | Error::TabNotFound(_) => StatusCode::NOT_FOUND,
            Error::TabExists(_) | Error::IdTaken(_) | Error::AssetExists(_) | Error::PaywordChainReused => {
                StatusCode::CONFLICT
            }
            Error::AssetNotRegistered(_) | Error::AssetScaleTooCoarse { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TabRejected(reject) => pay_reject_status(*reject),
            Error::PasskeyCloneSuspected => StatusCode::FORBIDDEN,
            Error::Forbidden(_) | Error::PrincipalSuspended => StatusCode::FORBIDDEN,
            Error::IdentityRejected(result) => identity_status(*result),
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized | Error::SecondFactorRequired => StatusCode::UNAUTHORIZED,
            Error::SessionNotFound => StatusCode::NOT_FOUND,
            Error::CsrfRefused => StatusCode::FORBIDDEN,
            Error::AccountRejected(result) => account_status(*result),
            Error::TransferRejected(result) => transfer_status(*result),
            Error::Overloaded | Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
}

fn pay_reject_status(reject: obol_core::channel::PayReject) -> StatusCode {
    use obol_core::channel::PayReject as P;
    match reject {
        P::BadSignature | P::WrongTab | P::WrongPayee | P::BadPreimage | P::SkipTooFar => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        P::DeviceInactive | P::DeviceLimit | P::PayerFrozen => StatusCode::FORBIDDEN,
        P::TabClosed
        | P::TabExpired
        | P::NotIncreasing
        | P::Stale
        | P::BeyondEscrow
        | P::NoCommitment
        | P::AlreadyCommitted
        | P::BeyondChain => StatusCode::CONFLICT,
    }
}

fn signature_status(error: &obol_wire::httpsig::SigError) -> StatusCode {
    use obol_wire::httpsig::SigError as E;
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
        | R::CodeReservedForTabs
        | R::CodeReservedForDisputes => StatusCode::UNPROCESSABLE_ENTITY,
        R::PendingTransferBelongsToTab
        | R::PendingTransferBelongsToDispute
        | R::DeviceLimitExceeded
        | R::PayerFrozen => StatusCode::FORBIDDEN,
    }
}

/// The id of the request being answered (see [`crate::middleware::access`]), or a new one
/// outside a request.
fn request_id() -> String {
    crate::middleware::REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_else(|_| new_request_id())
}

/// A new request id, unique within the process.
pub(crate) fn new_request_id() -> String {
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
            match &self.0 {
                Error::Internal(detail) => tracing::error!(request_id = %id, %detail, "internal error"),
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
            challenge: match &self.0 {
                Error::RequiresAction(challenge) => Some((**challenge).clone()),
                _ => None,
            },
            attempts_left: match &self.0 {
                Error::FactorCheckFailed { attempts_left } => Some(*attempts_left),
                _ => None,
            },
            risk: match &self.0 {
                Error::RiskBlocked(risk) => Some((**risk).clone()),
                _ => None,
            },
            review: match &self.0 {
                Error::HeldForReview(review) => Some((**review).clone()),
                _ => None,
            },
            explanation: obol_app::explain::explain(self.code()),
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Error::HeldForReview(review) = &self.0
            && let Ok(value) = HeaderValue::from_str(&format!("/v1/risk/reviews/{}", review.id))
        {
            response.headers_mut().insert(header::LOCATION, value);
        }
        if matches!(self.0, Error::Overloaded) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Error::RateLimited(wait_s) = &self.0
            && let Ok(value) = HeaderValue::from_str(&wait_s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self.0, Error::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
