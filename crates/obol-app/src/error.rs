//! The one error type of obol's use cases: what went wrong, named for what failed, with a
//! stable machine `code`. The HTTP shell maps each variant to a status in one exhaustive match
//! (`obol_http::error`); nothing here names HTTP.

use obol_core::identity::IdentityResult;
use obol_core::ledger::{CreateAccountResult, CreateTransferResult};
use obol_store::EngineError;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A PayWord chain already committed to another tab.
    #[error("this hash chain is committed to another tab already: a chain pays one tab only (make a new one)")]
    PaywordChainReused,
    /// A custom asset code the operator never registered.
    #[error(
        "{0} is not an asset obol knows: not in ISO 4217, and not registered (the operator registers custom assets with POST /v1/assets)"
    )]
    AssetNotRegistered(String),
    /// A custom asset at a scale coarser than it was registered with.
    #[error("{code} counts in units of scale {registered} or finer, not {scale}")]
    AssetScaleTooCoarse {
        /// The asset.
        code: String,
        /// The scale asked for.
        scale: u8,
        /// The scale it was registered with.
        registered: u8,
    },
    /// A custom asset is registered already, differently.
    #[error("{0} is registered already with another scale or description; a registered asset never changes")]
    AssetExists(String),
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
    /// The principal has a second factor: signing in needs its current code.
    #[error("this principal has a second factor: send its current TOTP code as `code`")]
    SecondFactorRequired,
    /// The request did not come through a session (or the session ended).
    #[error("no session: sign in at POST /v1/sessions")]
    SessionNotFound,
    /// A request through a session that changes something lacked the session's CSRF token, or
    /// came from another site.
    #[error("send the session's CSRF token in X-CSRF-Token, from the same site")]
    CsrfRefused,
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
    Signature(obol_wire::httpsig::SigError),
    /// The operation needs step-up approval first.
    #[error(
        "this payment needs your approval: approve the challenge with a second factor, then resend the request with the header Obol-Approval: <challenge id>"
    )]
    RequiresAction(Box<crate::views::ChallengeDto>),
    /// The risk policy refuses this payment.
    #[error("this payment is refused: {}", .0.reason_en)]
    RiskBlocked(Box<crate::views::RiskDto>),
    /// The risk policy holds this request for an analyst (answered 202: not an error, not done).
    #[error("this request is held for review and runs only if an analyst approves it: {}", .0.risk.reason_en)]
    HeldForReview(Box<crate::views::ReviewDto>),
    /// The tab is paused until an analyst decides its review.
    #[error("tab {0} is paused for review {1}; it accepts no payments until an analyst approves")]
    TabPaused(u128, String),
    /// No review with that id.
    #[error("review {0} not found")]
    ReviewNotFound(String),
    /// No such audit entry or tree size.
    #[error("{0}")]
    AuditNotFound(String),
    /// A refund asks more than what is left of the payment.
    #[error("transfer {payment} has {left} left to refund")]
    RefundExceedsPayment {
        /// The payment.
        payment: u128,
        /// Minor units left to refund.
        left: String,
    },
    /// A use of personal data beyond the payment itself that the person has not consented to.
    #[error("principal {0} has not consented to {1}; the person grants it with PUT /v1/principals/{0}/consents/{1}")]
    ConsentRequired(u128, String),
    /// The person's personal data was erased (crypto-shredded): nothing of it can be read.
    #[error("principal {0}'s personal data was erased")]
    PersonalDataErased(u128),
    /// The person asked for erasure and the law keeps the data until its retention ends: only
    /// the person, or a read for a legal obligation, may see it until then.
    #[error("principal {0} asked for erasure; until {1} only a read for a legal obligation may see the data")]
    PersonalDataRestricted(u128, String),
    /// The review was decided already.
    #[error("review {0} was {1} already")]
    ReviewDecided(String, String),
    /// The request was held for review and an analyst declined it: it never runs.
    #[error("this payment was held for review {0} and declined; it will not run")]
    ReviewDeclined(String),
    /// The request was held for review, approved, and refused by the ledger when it ran at
    /// approval (`{1}`): that was its one run; a retry never runs it again.
    #[error("this payment was held for review {0}, approved, and refused when it ran ({1}); it will not run again")]
    ReviewRefused(String, String),
    /// A policy bundle was refused; the live policy is unchanged.
    #[error("the bundle was refused and the live policy is unchanged: {0}")]
    PolicyRefused(String),
    /// No shadow run is going on.
    #[error("no candidate policy runs in shadow; submit one with POST /v1/risk/policy?shadow=true")]
    NoShadow,
    /// No such passkey among the principal's.
    #[error("passkey {0} is not one of this principal's")]
    PasskeyNotFound(String),
    /// The risk engine decides by its rules alone: no model is loaded.
    #[error("no model is loaded; train one with obol risk train and start obol serve with --risk-model")]
    NoModel,
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
    /// No webhook endpoint with this id that the caller may see.
    #[error("webhook {0} not found")]
    WebhookNotFound(u128),
    /// No dispute with this id that the caller may see.
    #[error("dispute {0} not found")]
    DisputeNotFound(u128),
    /// More disputed than the payment has left (after refunds and other disputes).
    #[error("payment {payment} has {left} left that is not refunded or disputed already")]
    DisputeExceedsPayment {
        /// The payment.
        payment: u128,
        /// What is left, minor units.
        left: String,
    },
    /// The law's notice window for disputing the payment has closed.
    #[error("payment {payment} can no longer be disputed: under {regime} the notice had to be given by {notice_by}")]
    DisputeWindowClosed {
        /// The payment.
        payment: u128,
        /// The law.
        regime: String,
        /// The last day a notice was timely.
        notice_by: String,
    },
    /// Withdrawing returns the provisional credit, and the payer's account cannot.
    #[error(
        "withdrawing dispute {id} returns the {credited} you were credited, and the account holds {available}: add funds first"
    )]
    DisputeCreditSpent {
        /// The dispute.
        id: u128,
        /// What was credited, minor units.
        credited: String,
        /// What the account holds, minor units.
        available: String,
    },
    /// The dispute is resolved or withdrawn, or past the step asked for.
    #[error("dispute {id} cannot take this step: it is {status}")]
    DisputeClosed {
        /// The dispute.
        id: u128,
        /// Where it stands.
        status: String,
    },
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

impl From<EngineError> for Error {
    fn from(error: EngineError) -> Error {
        match error {
            EngineError::Overloaded => Error::Overloaded,
            EngineError::Stopped => Error::Unavailable,
            EngineError::Meta(detail) => Error::Internal(detail),
            EngineError::Unencodable(error) => Error::InvalidField(error.to_string()),
        }
    }
}

impl Error {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::JsonSyntax(_) => "json_syntax",
            Error::JsonData(_) => "json_schema",
            Error::ContentType => "unsupported_media_type",
            Error::BodyTooLarge(_) => "body_too_large",
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidAmount { .. } => "invalid_amount",
            Error::InvalidAsset(_) => "invalid_asset",
            Error::PaywordChainReused => "payword_chain_reused",
            Error::AssetNotRegistered(_) => "asset_not_registered",
            Error::AssetScaleTooCoarse { .. } => "asset_scale_too_coarse",
            Error::AssetExists(_) => "asset_exists",
            Error::InvalidFlag(_) => "invalid_flag",
            Error::InvalidQuery(_) => "invalid_query",
            Error::BatchSize { .. } => "batch_size",
            Error::AccountNotFound(_) => "account_not_found",
            Error::TransferNotFound(_) => "transfer_not_found",
            Error::RouteNotFound => "route_not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Unauthorized => "unauthorized",
            Error::SecondFactorRequired => "second_factor_required",
            Error::SessionNotFound => "session_not_found",
            Error::CsrfRefused => "csrf_refused",
            Error::Forbidden(_) => "forbidden",
            Error::PrincipalSuspended => "principal_suspended",
            Error::PrincipalNotFound(_) => "principal_not_found",
            Error::KeyNotFound(_) => "key_not_found",
            Error::DeviceNotFound(_) => "device_not_found",
            Error::Signature(error) => error.code(),
            Error::DeviceLimit(_) => "device_limit_exceeded",
            Error::RequiresAction(_) => "requires_action",
            Error::RiskBlocked(_) => "risk_blocked",
            Error::HeldForReview(_) => "held_for_review",
            Error::TabPaused(..) => "tab_paused_for_review",
            Error::ReviewNotFound(_) => "review_not_found",
            Error::AuditNotFound(_) => "audit_not_found",
            Error::ConsentRequired(..) => "consent_required",
            Error::RefundExceedsPayment { .. } => "refund_exceeds_payment",
            Error::DisputeNotFound(_) => "dispute_not_found",
            Error::WebhookNotFound(_) => "webhook_not_found",
            Error::DisputeExceedsPayment { .. } => "dispute_exceeds_payment",
            Error::DisputeWindowClosed { .. } => "dispute_window_closed",
            Error::DisputeClosed { .. } => "dispute_closed",
            Error::DisputeCreditSpent { .. } => "dispute_credit_spent",
            Error::PersonalDataErased(_) => "personal_data_erased",
            Error::PersonalDataRestricted(..) => "personal_data_restricted",
            Error::ReviewDecided(..) => "review_decided",
            Error::ReviewDeclined(_) => "review_declined",
            Error::ReviewRefused(..) => "review_refused",
            Error::PolicyRefused(_) => "policy_refused",
            Error::NoShadow => "no_shadow",
            Error::NoModel => "no_model",
            Error::PasskeyNotFound(_) => "passkey_not_found",
            Error::FactorCheckFailed { .. } => "factor_check_failed",
            Error::ChallengeNotFound(_) => "challenge_not_found",
            Error::TabNotFound(_) => "tab_not_found",
            Error::TabExists(_) => "tab_exists",
            Error::IdTaken(_) => "id_taken",
            Error::TabRejected(reject) => pay_reject_code(*reject),
            Error::PasskeyCloneSuspected => "passkey_clone_suspected",
            Error::InvalidField(_) => "invalid_field",
            Error::WrongNetwork(_) => "invalid_network",
            Error::IdentityRejected(result) => result.as_str(),
            Error::AccountRejected(result) => result.as_str(),
            Error::TransferRejected(result) => result.as_str(),
            Error::Overloaded => "overloaded",
            Error::RateLimited(_) => "rate_limited",
            Error::Unavailable => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::Internal(_) => "internal",
        }
    }
}

/// The stable code of a tab's refusal of a payment.
pub fn pay_reject_code(reject: obol_core::channel::PayReject) -> &'static str {
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
        P::AlreadyCommitted => "payword_already_committed",
        P::BadPreimage => "payword_bad_preimage",
        P::BeyondChain => "payword_beyond_chain",
        P::SkipTooFar => "payword_skip_too_far",
        P::DeviceInactive => "tab_device_inactive",
        P::PayerFrozen => "payer_frozen",
        P::DeviceLimit => "device_limit_exceeded",
    }
}
