//! Rules as policy: bundles of CEL expressions over an event's features and facts, each rule
//! with an action, a reason in English and Korean, and an owner. Bundles have a name, a version
//! and an effective time; the policy in force at an event's time is, per name, the highest
//! version already effective. Actions are tried in Stripe Radar's order (step-up, allow, block,
//! review) and the first rule that matches decides; no match allows.
//!
//! A bundle that does not parse, names an unknown variable, or whose rule does not answer a
//! boolean on a neutral input is refused whole: the policy keeps what it had. Bundles are TOML:
//!
//! ```toml
//! name = "eu-psd2-sca"
//! version = 1
//! effective_from_s = 1735689600
//! [[rules]]
//! id = "low-value-over-30-eur"
//! action = "step_up"
//! owner = "risk@example.com"
//! when = "jurisdiction == 'EU' && currency == 'EUR' && amount_minor > 3000"
//! reason_en = "Payments over EUR 30 need strong customer authentication."
//! reason_ko = "30유로를 넘는 결제는 강화된 고객 인증이 필요합니다."
//! ```

use cel::{Context, Program, Value};
use serde::Deserialize;

use crate::features::{FEATURE_NAMES, Features};

/// What a rule does when it matches, in the order rules are tried.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Action {
    /// Ask for strong authentication bound to the amount and payee.
    StepUp,
    /// Let it through.
    Allow,
    /// Refuse it.
    Block,
    /// Hold it for an analyst.
    Review,
}

impl Action {
    /// Every action, in the order rules are tried.
    pub const ORDER: [Action; 4] = [Action::StepUp, Action::Allow, Action::Block, Action::Review];

    fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "step_up" => Action::StepUp,
            "allow" => Action::Allow,
            "block" => Action::Block,
            "review" => Action::Review,
            _ => return None,
        })
    }

    /// The name bundles use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::StepUp => "step_up",
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Review => "review",
        }
    }
}

/// Facts about an event beyond its streaming features, as rules see them. Every `_minor` amount
/// counts the paying account's own units (10^-scale of its asset: nano-dollars for USD at
/// scale 9), not whole ISO 4217 minor units; rules scale their thresholds by
/// [`Facts::units_per_iso_minor`]. Rules name each fact by its CEL name (`FACT_NAMES`), which
/// is the field's name but for `units_per_iso_minor`, which rules know as `minor_per_unit`.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The payment, in the paying account's units.
    pub amount_minor: i64,
    /// The paying account's units in one ISO 4217 minor unit of its currency: 1 for EUR or
    /// USD at scale 2, 10,000,000 for USD at scale 9 (nano-dollars), 1 for KRW at scale 0. Rules
    /// multiply their thresholds by it, so one bundle holds at every scale, exactly. Rules name
    /// it `minor_per_unit`.
    pub units_per_iso_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `EU`, `US`, `KR`, ...: whose rules apply to the payer.
    pub jurisdiction: String,
    /// Payments since the payer's last strong authentication (before this one).
    pub sca_payments_since: i64,
    /// What the payer paid since its last strong authentication (before this one), in the
    /// paying account's units.
    pub sca_amount_since_minor: i64,
    /// What the payer paid this calendar month, this payment included, in the paying account's
    /// units.
    pub month_total_minor: i64,
    /// The payer's own monthly limit, in the paying account's units; -1 when none is set (0
    /// blocks everything).
    pub user_limit_minor: i64,
    /// What the payee sells (`digital_goods`, `gift_cards`, `transit`, ...).
    pub payee_category: String,
    /// The model's fraud score, 0 to 1.
    pub model_score: f64,
    /// The holder's own cap on one payment, in the paying account's units; -1 when none is set.
    pub holder_payment_cap_minor: i64,
    /// The holder's own cap on a day's payments, in the paying account's units; -1 when none is
    /// set.
    pub holder_day_cap_minor: i64,
    /// What the holder paid today, this payment included, in the paying account's units.
    pub holder_day_spent_minor: i64,
    /// What moves the money: `transfer`, `tab_open`, `tab_topup` or `tab_checkpoint` (what a
    /// voucher stream paid since its last checkpoint).
    pub event_kind: String,
    /// How the payer pays: `remote` (online, obol's own API), `contactless` (at a point of sale).
    pub channel: String,
    /// What the payment is, for the reference fraud rates: `credit_transfer` or `card`.
    pub payment_instrument: String,
    /// The PSP's fraud rate for this instrument over the last 90 days, by value, parts per
    /// million; -1 when it is not monitored (then no transaction risk analysis exemption).
    pub tra_fraud_rate_ppm: i64,
}

impl Default for Facts {
    fn default() -> Facts {
        Facts {
            amount_minor: 0,
            units_per_iso_minor: 1,
            currency: "USD".into(),
            jurisdiction: "US".into(),
            sca_payments_since: 0,
            sca_amount_since_minor: 0,
            month_total_minor: 0,
            user_limit_minor: -1,
            payee_category: "digital_goods".into(),
            model_score: 0.0,
            holder_payment_cap_minor: -1,
            holder_day_cap_minor: -1,
            holder_day_spent_minor: 0,
            event_kind: "transfer".into(),
            channel: "remote".into(),
            payment_instrument: "credit_transfer".into(),
            tra_fraud_rate_ppm: -1,
        }
    }
}

/// The facts' names in rules. Bundles are versioned and stay in the log, so a name never changes:
/// a bundle stored under an older build must compile again at the next start.
const FACT_NAMES: [&str; 17] = [
    "amount_minor",
    "minor_per_unit",
    "currency",
    "jurisdiction",
    "sca_payments_since",
    "sca_amount_since_minor",
    "month_total_minor",
    "user_limit_minor",
    "payee_category",
    "model_score",
    "holder_payment_cap_minor",
    "holder_day_cap_minor",
    "holder_day_spent_minor",
    "event_kind",
    "channel",
    "payment_instrument",
    "tra_fraud_rate_ppm",
];

fn fact(facts: &Facts, name: &str) -> Option<Value> {
    Some(match name {
        "amount_minor" => Value::Int(facts.amount_minor),
        "minor_per_unit" => Value::Int(facts.units_per_iso_minor),
        "currency" => Value::from(facts.currency.as_str()),
        "jurisdiction" => Value::from(facts.jurisdiction.as_str()),
        "sca_payments_since" => Value::Int(facts.sca_payments_since),
        "sca_amount_since_minor" => Value::Int(facts.sca_amount_since_minor),
        "month_total_minor" => Value::Int(facts.month_total_minor),
        "user_limit_minor" => Value::Int(facts.user_limit_minor),
        "payee_category" => Value::from(facts.payee_category.as_str()),
        "model_score" => Value::Float(facts.model_score),
        "holder_payment_cap_minor" => Value::Int(facts.holder_payment_cap_minor),
        "holder_day_cap_minor" => Value::Int(facts.holder_day_cap_minor),
        "holder_day_spent_minor" => Value::Int(facts.holder_day_spent_minor),
        "event_kind" => Value::from(facts.event_kind.as_str()),
        "channel" => Value::from(facts.channel.as_str()),
        "payment_instrument" => Value::from(facts.payment_instrument.as_str()),
        "tra_fraud_rate_ppm" => Value::Int(facts.tra_fraud_rate_ppm),
        _ => return None,
    })
}

/// Why a bundle was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML of the bundle's shape.
    #[error("the bundle does not parse: {0}")]
    Parse(String),
    /// A rule's expression is not CEL.
    #[error("rule {rule}: the expression does not compile: {detail}")]
    Compile {
        /// The rule.
        rule: String,
        /// The compiler's words.
        detail: String,
    },
    /// A rule names a variable no event has.
    #[error("rule {rule}: unknown variable {variable:?}")]
    UnknownVariable {
        /// The rule.
        rule: String,
        /// The name.
        variable: String,
    },
    /// A rule does not answer true or false.
    #[error("rule {rule}: {detail}")]
    NotBoolean {
        /// The rule.
        rule: String,
        /// What it answered instead.
        detail: String,
    },
    /// An action other than step_up, allow, block or review.
    #[error("rule {rule}: unknown action {action:?}")]
    UnknownAction {
        /// The rule.
        rule: String,
        /// The action given.
        action: String,
    },
    /// Two rules share an id, or a field is empty.
    #[error("{0}")]
    Invalid(String),
    /// This name and version is loaded already with other contents.
    #[error("bundle {name} version {version} is loaded already")]
    Duplicate {
        /// Name.
        name: String,
        /// Version.
        version: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    name: String,
    version: u32,
    effective_from_s: u64,
    #[serde(default)]
    description: String,
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    action: String,
    owner: String,
    when: String,
    reason_en: String,
    reason_ko: String,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Id, unique in its bundle.
    pub id: String,
    /// What it does when it matches.
    pub action: Action,
    /// Who answers for it.
    pub owner: String,
    /// The CEL expression.
    pub when: String,
    /// Why, in English.
    pub reason_en: String,
    /// Why, in Korean.
    pub reason_ko: String,
    program: Program,
    variables: Vec<String>,
}

/// A compiled bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Name; versions of one name replace each other over time.
    pub name: String,
    /// Version.
    pub version: u32,
    /// From when it is in force, seconds since the Unix epoch.
    pub effective_from_s: u64,
    /// What it is for.
    pub description: String,
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// The bundle's text, as loaded (for the change record).
    pub source: String,
}

/// The decision for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// `bundle@version/rule` that decided, if a rule did.
    pub rule: Option<String>,
    /// Why, in English ("" when no rule matched).
    pub reason_en: String,
    /// Why, in Korean.
    pub reason_ko: String,
}

impl Decision {
    fn allow() -> Decision {
        Decision { action: Action::Allow, rule: None, reason_en: String::new(), reason_ko: String::new() }
    }
}

/// Events a rule is tried on before it is accepted: one per jurisdiction and currency obol ships
/// rules for, with counters and limits set.
fn probes() -> Vec<Facts> {
    [("US", "USD"), ("EU", "EUR"), ("KR", "KRW"), ("GB", "GBP")]
        .iter()
        .flat_map(|(jurisdiction, currency)| {
            [(-1, "remote", "card"), (0, "contactless", "credit_transfer"), (50_000, "remote", "credit_transfer")].map(
                |(user_limit_minor, channel, instrument)| Facts {
                    amount_minor: 5_000,
                    units_per_iso_minor: 1,
                    currency: (*currency).into(),
                    jurisdiction: (*jurisdiction).into(),
                    sca_payments_since: 6,
                    sca_amount_since_minor: 20_000,
                    month_total_minor: 60_000,
                    user_limit_minor,
                    payee_category: "gift_cards".into(),
                    model_score: 0.5,
                    holder_payment_cap_minor: user_limit_minor,
                    holder_day_cap_minor: user_limit_minor,
                    holder_day_spent_minor: 60_000,
                    event_kind: "transfer".into(),
                    channel: channel.into(),
                    payment_instrument: instrument.into(),
                    tra_fraud_rate_ppm: user_limit_minor,
                },
            )
        })
        .collect()
}

fn is_known(name: &str) -> bool {
    FEATURE_NAMES.contains(&name) || FACT_NAMES.contains(&name)
}

fn bind(context: &mut Context, variables: &[String], features: &Features, facts: &Facts) {
    for name in variables {
        let value = match features.get(name) {
            Some(number) => Value::Float(number),
            None => fact(facts, name).unwrap_or(Value::Null),
        };
        context.add_variable_from_value(name.clone(), value);
    }
}

impl Rule {
    /// Whether the rule matches, with its variables bound in `scope`.
    fn matches(&self, scope: &Context) -> Result<bool, String> {
        match self.program.execute(scope) {
            Ok(Value::Bool(matched)) => Ok(matched),
            Ok(other) => Err(format!("answered {other:?}, not true or false")),
            Err(error) => Err(format!("failed: {error}")),
        }
    }
}

impl Bundle {
    /// Parses and compiles a bundle, refusing it whole if any rule is unusable.
    pub fn compile(text: &str) -> Result<Bundle, PolicyError> {
        let file: BundleFile = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let root = Context::default();
        if file.name.trim().is_empty() || file.rules.is_empty() {
            return Err(PolicyError::Invalid("a bundle needs a name and at least one rule".into()));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for spec in file.rules {
            if rules.iter().any(|r| r.id == spec.id) {
                return Err(PolicyError::Invalid(format!("two rules are called {}", spec.id)));
            }
            if [&spec.id, &spec.owner, &spec.reason_en, &spec.reason_ko].iter().any(|f| f.trim().is_empty()) {
                return Err(PolicyError::Invalid(format!(
                    "rule {:?}: id, owner and both reasons are required",
                    spec.id
                )));
            }
            let action = Action::parse(&spec.action)
                .ok_or_else(|| PolicyError::UnknownAction { rule: spec.id.clone(), action: spec.action.clone() })?;
            let program = Program::compile(&spec.when)
                .map_err(|e| PolicyError::Compile { rule: spec.id.clone(), detail: e.to_string() })?;
            let variables: Vec<String> = program.references().variables().iter().map(|v| v.to_string()).collect();
            if let Some(unknown) = variables.iter().find(|v| !is_known(v)) {
                return Err(PolicyError::UnknownVariable { rule: spec.id.clone(), variable: unknown.clone() });
            }
            let rule = Rule {
                id: spec.id,
                action,
                owner: spec.owner,
                when: spec.when,
                reason_en: spec.reason_en,
                reason_ko: spec.reason_ko,
                program,
                variables,
            };
            // Probe events from each jurisdiction must get a true or false: this catches type
            // errors behind a jurisdiction test before traffic does.
            for facts in probes() {
                let mut scope = root.new_inner_scope();
                bind(&mut scope, &rule.variables, &Features::default(), &facts);
                rule.matches(&scope).map_err(|detail| PolicyError::NotBoolean { rule: rule.id.clone(), detail })?;
            }
            rules.push(rule);
        }
        Ok(Bundle {
            name: file.name,
            version: file.version,
            effective_from_s: file.effective_from_s,
            description: file.description,
            rules,
            source: text.to_string(),
        })
    }
}

/// Every loaded bundle version; decides with the ones in force at an event's time.
pub struct Policy {
    bundles: Vec<Bundle>,
    /// The CEL standard library, built once: each decision binds its variables in a child scope.
    root: Context<'static, 'static>,
    /// Every variable some loaded rule reads, bound once per decision.
    variables: Vec<String>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("bundles", &self.bundles).field("variables", &self.variables).finish()
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new()
    }
}

impl Policy {
    /// An empty policy (allows everything).
    pub fn new() -> Policy {
        Policy { bundles: Vec::new(), root: Context::default(), variables: Vec::new() }
    }

    /// Adds a compiled bundle version. The same name and version twice is refused unless the text
    /// is the same (then nothing changes).
    pub fn add(&mut self, bundle: Bundle) -> Result<(), PolicyError> {
        if let Some(existing) = self.bundles.iter().find(|b| b.name == bundle.name && b.version == bundle.version) {
            if existing.source == bundle.source {
                return Ok(());
            }
            return Err(PolicyError::Duplicate { name: bundle.name, version: bundle.version });
        }
        for rule in &bundle.rules {
            for variable in &rule.variables {
                if !self.variables.contains(variable) {
                    self.variables.push(variable.clone());
                }
            }
        }
        self.bundles.push(bundle);
        Ok(())
    }

    /// Replaces the bundles of `bundle.name` with this one version (a candidate for shadow mode).
    pub fn with_replaced(&self, bundle: Bundle) -> Result<Policy, PolicyError> {
        let mut policy = Policy::new();
        for existing in self.bundles.iter().filter(|b| b.name != bundle.name) {
            policy.add(Bundle::compile(&existing.source)?)?;
        }
        policy.add(bundle)?;
        Ok(policy)
    }

    /// The bundles in force at `at_s`: per name, the highest version already effective.
    pub fn in_force(&self, at_s: u64) -> Vec<&Bundle> {
        let mut chosen: Vec<&Bundle> = Vec::new();
        for bundle in self.bundles.iter().filter(|b| b.effective_from_s <= at_s) {
            match chosen.iter_mut().find(|c| c.name == bundle.name) {
                Some(current) if current.version < bundle.version => *current = bundle,
                Some(_) => {}
                None => chosen.push(bundle),
            }
        }
        chosen.sort_by(|a, b| a.name.cmp(&b.name));
        chosen
    }

    /// Decides an event at `at_s`: actions in Radar's order, bundles by name, rules in file
    /// order; the first match decides. A rule that fails on this event (it passed on a neutral
    /// one) holds the event for review rather than letting it through.
    pub fn decide(&self, at_s: u64, features: &Features, facts: &Facts) -> Decision {
        let bundles = self.in_force(at_s);
        let mut scope = self.root.new_inner_scope();
        bind(&mut scope, &self.variables, features, facts);
        for action in Action::ORDER {
            for bundle in &bundles {
                for rule in bundle.rules.iter().filter(|r| r.action == action) {
                    let named = format!("{}@{}/{}", bundle.name, bundle.version, rule.id);
                    match rule.matches(&scope) {
                        Ok(true) => {
                            return Decision {
                                action,
                                rule: Some(named),
                                reason_en: rule.reason_en.clone(),
                                reason_ko: rule.reason_ko.clone(),
                            };
                        }
                        Ok(false) => {}
                        Err(detail) => {
                            return Decision {
                                action: Action::Review,
                                rule: Some(named),
                                reason_en: format!("A policy rule could not be evaluated ({detail}); held for review."),
                                reason_ko: "정책 규칙을 평가할 수 없어 검토를 위해 보류되었습니다.".into(),
                            };
                        }
                    }
                }
            }
        }
        Decision::allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EU: &str = include_str!("../../../policy/eu-psd2-sca.toml");
    const KR: &str = include_str!("../../../policy/kr-carrier-micropayments.toml");
    const CAPS: &str = include_str!("../../../policy/holder-caps.toml");
    const REG_E: &str = include_str!("../../../policy/us-reg-e.toml");
    const SIGNALS: &str = include_str!("../../../policy/fraud-signals.toml");

    fn features(pairs: &[(&str, f64)]) -> Features {
        let mut features = Features::default();
        for (name, value) in pairs {
            let index = crate::features::FEATURE_NAMES.iter().position(|n| n == name).unwrap();
            features.0[index] = *value;
        }
        features
    }
    const NOW: u64 = 1_800_000_000;

    fn eur(amount_minor: i64, since: i64, since_amount: i64) -> Facts {
        Facts {
            amount_minor,
            currency: "EUR".into(),
            jurisdiction: "EU".into(),
            sca_payments_since: since,
            sca_amount_since_minor: since_amount,
            ..Facts::default()
        }
    }

    fn decide(policy: &Policy, facts: &Facts) -> Decision {
        policy.decide(NOW, &Features::default(), facts)
    }

    fn policy(texts: &[&str]) -> Policy {
        let mut policy = Policy::new();
        for text in texts {
            policy.add(Bundle::compile(text).unwrap()).unwrap();
        }
        policy
    }

    #[test]
    fn eu_low_value_exemption_holds_to_the_cent_and_the_counters() {
        let policy = policy(&[EU]);
        assert_eq!(decide(&policy, &eur(3000, 0, 0)).action, Action::Allow, "EUR 30.00 is exempt");
        let over = decide(&policy, &eur(3001, 0, 0));
        assert_eq!(over.action, Action::StepUp, "EUR 30.01 is not");
        assert_eq!(over.rule.as_deref(), Some("eu-psd2-sca@1/low-value-over-30"));
        assert!(over.reason_en.contains("EUR 30") && !over.reason_ko.is_empty());
        assert_eq!(decide(&policy, &eur(100, 4, 400)).action, Action::Allow, "the 5th payment since SCA is exempt");
        assert_eq!(decide(&policy, &eur(100, 5, 500)).action, Action::StepUp, "the 6th needs SCA");
        assert_eq!(decide(&policy, &eur(1000, 3, 9000)).action, Action::Allow, "EUR 100.00 cumulative is exempt");
        assert_eq!(decide(&policy, &eur(1001, 3, 9000)).action, Action::StepUp, "EUR 100.01 cumulative is not");
        assert_eq!(decide(&policy, &eur(100, 0, 0)).action, Action::Allow, "after SCA the counters restart");
        let mut dollars = eur(50_000, 9, 90_000);
        dollars.jurisdiction = "US".into();
        dollars.currency = "USD".into();
        assert_eq!(decide(&policy, &dollars).action, Action::Allow, "the EU bundle leaves US payments alone");
    }

    #[test]
    fn eu_contactless_payments_follow_art_11_numbers() {
        let policy = policy(&[EU]);
        let tap = |amount_minor: i64, since: i64, since_amount: i64| Facts {
            channel: "contactless".into(),
            ..eur(amount_minor, since, since_amount)
        };
        assert_eq!(decide(&policy, &tap(5000, 0, 0)).action, Action::Allow, "EUR 50.00 contactless is exempt");
        let over = decide(&policy, &tap(5001, 0, 0));
        assert_eq!(over.rule.as_deref(), Some("eu-psd2-sca@1/contactless-over-50"), "EUR 50.01 is not");
        assert_eq!(decide(&policy, &tap(4000, 4, 11000)).action, Action::Allow, "the 5th, EUR 150.00 in all");
        assert_eq!(decide(&policy, &tap(100, 5, 500)).action, Action::StepUp, "the 6th contactless payment");
        let cumulative = decide(&policy, &tap(4001, 3, 11000));
        assert_eq!(cumulative.rule.as_deref(), Some("eu-psd2-sca@1/contactless-over-150-cumulative"), "EUR 150.01");
    }

    #[test]
    fn eu_transaction_risk_analysis_exempts_only_within_the_band_and_the_reference_rate() {
        let policy = policy(&[EU]);
        let tra = |amount_minor: i64, instrument: &str, rate_ppm: i64, score: f64| Facts {
            payment_instrument: instrument.into(),
            tra_fraud_rate_ppm: rate_ppm,
            model_score: score,
            ..eur(amount_minor, 0, 0)
        };
        let action = |facts: Facts| decide(&policy, &facts).action;
        // Cards: 0.13% up to EUR 100, 0.06% up to EUR 250, 0.01% up to EUR 500.
        assert_eq!(action(tra(10_000, "card", 1300, 0.1)), Action::Allow, "EUR 100 at 0.13%");
        assert_eq!(action(tra(10_000, "card", 1301, 0.1)), Action::StepUp, "a rate above the reference");
        assert_eq!(action(tra(10_001, "card", 1300, 0.1)), Action::StepUp, "EUR 100.01 is in the next band");
        assert_eq!(action(tra(25_000, "card", 600, 0.1)), Action::Allow);
        assert_eq!(action(tra(50_000, "card", 100, 0.1)), Action::Allow);
        assert_eq!(action(tra(50_001, "card", 0, 0.1)), Action::StepUp, "no TRA above EUR 500");
        // Credit transfers: 0.015%, 0.01%, 0.005%.
        assert_eq!(action(tra(10_000, "credit_transfer", 150, 0.1)), Action::Allow);
        assert_eq!(action(tra(10_000, "credit_transfer", 151, 0.1)), Action::StepUp);
        assert_eq!(action(tra(25_000, "credit_transfer", 100, 0.1)), Action::Allow);
        assert_eq!(action(tra(50_000, "credit_transfer", 50, 0.1)), Action::Allow);
        assert_eq!(action(tra(50_000, "credit_transfer", 51, 0.1)), Action::StepUp);
        // A real-time risk flag, or no monitoring, ends the exemption.
        assert_eq!(action(tra(10_000, "card", 100, 0.5)), Action::StepUp, "the model flags it");
        assert_eq!(action(tra(10_000, "card", -1, 0.1)), Action::StepUp, "rate not monitored");
        assert_eq!(action(tra(3_000, "card", -1, 0.9)), Action::Allow, "low value needs no TRA");
    }

    #[test]
    fn rules_read_units_per_iso_minor_by_its_stable_name_minor_per_unit() {
        let policy = policy(&[REG_E]);
        let mut new_device = Features::default();
        new_device.0[crate::features::FEATURE_NAMES.iter().position(|n| *n == "device_new").unwrap()] = 1.0;
        // USD at scale 9: nano-dollars, 10,000,000 to the cent.
        let nano = |amount_minor: i64| Facts { amount_minor, units_per_iso_minor: 10_000_000, ..Facts::default() };
        assert_eq!(policy.decide(NOW, &new_device, &nano(50_000_000_000)).action, Action::Allow, "$50.00");
        assert_eq!(policy.decide(NOW, &new_device, &nano(50_000_000_001)).action, Action::StepUp, "$50.000000001");
    }

    #[test]
    fn us_reg_e_confirms_the_payer_past_the_consumers_liability_caps() {
        let policy = policy(&[REG_E]);
        let usd = |amount_minor: i64| Facts { amount_minor, ..Facts::default() };
        let mut new_device = Features::default();
        new_device.0[crate::features::FEATURE_NAMES.iter().position(|n| *n == "device_new").unwrap()] = 1.0;
        let mut new_payee = Features::default();
        new_payee.0[crate::features::FEATURE_NAMES.iter().position(|n| *n == "payee_new_for_payer").unwrap()] = 1.0;
        let at = |features: &Features, amount: i64| policy.decide(NOW, features, &usd(amount));
        assert_eq!(at(&new_device, 5000).action, Action::Allow, "$50.00 from a new device");
        assert_eq!(at(&new_device, 5001).rule.as_deref(), Some("us-reg-e@1/new-device-over-50"), "$50.01");
        assert_eq!(at(&Features::default(), 9000).action, Action::Allow, "a known device");
        assert_eq!(at(&new_payee, 50_000).action, Action::Allow, "$500.00 to a new payee");
        assert_eq!(at(&new_payee, 50_001).rule.as_deref(), Some("us-reg-e@1/new-payee-over-500"), "$500.01");
        let mut euro = usd(90_000);
        euro.currency = "EUR".into();
        euro.jurisdiction = "EU".into();
        assert_eq!(policy.decide(NOW, &new_payee, &euro).action, Action::Allow, "US rules only");
    }

    #[test]
    fn every_fraud_signal_fires_at_its_threshold_and_not_below() {
        let policy = policy(&[SIGNALS]);
        let rule = |pairs: &[(&str, f64)], model_score: f64| {
            let facts = Facts { model_score, ..Facts::default() };
            policy
                .decide(NOW, &features(pairs), &facts)
                .rule
                .map(|r| r.trim_start_matches("fraud-signals@3/").to_string())
        };
        let refund = |pairs: &[(&str, f64)]| {
            let facts = Facts { event_kind: "refund".into(), ..Facts::default() };
            policy.decide(NOW, &features(pairs), &facts).rule
        };
        let burst = [("payer_count_1m", 9.0), ("amount", 3.0), ("pair_count_24h", 0.0), ("payer_count_1h", 9.0)];
        assert!(rule(&burst, 0.0).is_some(), "a burst of tiny payments to new payees is caught");
        assert_eq!(refund(&burst), None, "the same burst of refunds is what refunds are for");
        let takeover = [("device_new", 1.0), ("network_new_for_payer", 1.0), ("failed_auth_count", 2.0)];
        assert_eq!(rule(&takeover, 0.0).as_deref(), Some("account-takeover"));
        assert_eq!(
            rule(&[takeover[0], takeover[1], ("failed_auth_count", 1.0)], 0.0),
            None,
            "one failure is not enough"
        );
        let cloned = [("network_new_for_payer", 1.0), ("payee_cash_like", 1.0), ("amount_over_mean", 4.0)];
        assert_eq!(rule(&cloned, 0.0).as_deref(), Some("cloned-device"));
        assert_eq!(rule(&[cloned[0], cloned[1], ("amount_over_mean", 3.99)], 0.0), None);
        // Card testing: many tiny payments a minute, each to a payee hardly paid before.
        let testing = [("payer_count_1m", 8.0), ("amount", 5.0), ("pair_count_24h", 2.0), ("payer_count_1h", 8.0)];
        assert_eq!(rule(&testing, 0.0).as_deref(), Some("card-testing"));
        let stream = [("payer_count_1m", 8.0), ("amount", 1.0), ("pair_count_24h", 8.0), ("payer_count_1h", 8.0)];
        assert_eq!(rule(&stream, 0.0), None, "a meter's eighth tick to its one payee is a stream, not card testing");
        // Velocity: many payments a minute spread over payees (the hour's count at least 1.5
        // times what this pair ever paid in a day), unlike a stream to one payee.
        let spread = [("payer_count_1m", 5.0), ("amount", 50.0), ("payer_count_1h", 6.0), ("pair_count_24h", 4.0)];
        assert_eq!(rule(&spread, 0.0).as_deref(), Some("velocity"));
        let burst = [("payer_count_1m", 12.0), ("amount", 20.0), ("payer_count_1h", 14.0), ("pair_count_24h", 12.0)];
        assert_eq!(rule(&burst, 0.0), None, "a reader's burst of articles from one publisher");
        assert_eq!(
            rule(&[("payer_count_1m", 4.99), ("amount", 50.0), ("payer_count_1h", 9.0), ("pair_count_24h", 1.0)], 0.0),
            None
        );
        let cluster = [("network_new_payers_1h", 5.0), ("network_new_for_payer", 1.0), ("payee_cash_like", 1.0)];
        assert_eq!(rule(&cluster, 0.0).as_deref(), Some("one-cell-cluster"));
        assert_eq!(rule(&[("network_new_payers_1h", 4.0), cluster[1], cluster[2]], 0.0), None);
        assert_eq!(rule(&[], 0.5).as_deref(), Some("model-high-risk"));
        assert_eq!(rule(&[], 0.4999), None);
    }

    #[test]
    fn korean_carrier_caps_and_a_zero_user_limit_block() {
        let policy = policy(&[KR]);
        let krw = |month_total_minor: i64, user_limit_minor: i64| Facts {
            amount_minor: 10_000,
            currency: "KRW".into(),
            jurisdiction: "KR".into(),
            month_total_minor,
            user_limit_minor,
            ..Facts::default()
        };
        assert_eq!(decide(&policy, &krw(1_000_000, -1)).action, Action::Allow, "KRW 1,000,000 a month is allowed");
        assert_eq!(decide(&policy, &krw(1_000_001, -1)).action, Action::Block, "one won more is not");
        assert_eq!(decide(&policy, &krw(10_000, 0)).action, Action::Block, "a limit of 0 blocks everything");
        assert_eq!(decide(&policy, &krw(50_000, 50_000)).action, Action::Allow);
        assert_eq!(decide(&policy, &krw(50_001, 50_000)).action, Action::Block, "the user's own limit holds");
    }

    #[test]
    fn the_holders_own_caps_block_at_one_unit_over() {
        let policy = policy(&[CAPS]);
        let facts = |amount_minor: i64, payment_cap: i64, day_cap: i64, day_spent: i64| Facts {
            amount_minor,
            holder_payment_cap_minor: payment_cap,
            holder_day_cap_minor: day_cap,
            holder_day_spent_minor: day_spent,
            ..Facts::default()
        };
        assert_eq!(decide(&policy, &facts(500, 500, -1, 500)).action, Action::Allow, "exactly the cap is allowed");
        let over = decide(&policy, &facts(501, 500, -1, 501));
        assert_eq!((over.action, over.rule.as_deref()), (Action::Block, Some("holder-caps@1/payment-cap")));
        assert_eq!(decide(&policy, &facts(100, -1, 1_000, 1_000)).action, Action::Allow);
        assert_eq!(decide(&policy, &facts(100, -1, 1_000, 1_001)).action, Action::Block, "the day's cap holds");
        assert_eq!(decide(&policy, &facts(1, 0, -1, 1)).action, Action::Block, "a cap of 0 blocks everything");
        assert_eq!(decide(&policy, &facts(1_000_000, -1, -1, 9_999_999)).action, Action::Allow, "no caps set");
        let month = |month_total_minor: i64, user_limit_minor: i64| Facts {
            month_total_minor,
            user_limit_minor,
            ..Facts::default()
        };
        assert_eq!(decide(&policy, &month(1_000, 1_000)).action, Action::Allow, "exactly the monthly limit");
        let over = decide(&policy, &month(1_001, 1_000));
        assert_eq!((over.action, over.rule.as_deref()), (Action::Block, Some("holder-caps@1/month-cap")));
        assert_eq!(decide(&policy, &month(1, 0)).action, Action::Block, "a monthly limit of 0 blocks everything");
        assert_eq!(decide(&policy, &month(9_999_999, -1)).action, Action::Allow, "no monthly limit");
    }

    #[test]
    fn actions_are_tried_in_radar_order_and_the_first_match_decides() {
        let both = r#"
            name = "order"
            version = 1
            effective_from_s = 0
            [[rules]]
            id = "review-all"
            action = "review"
            owner = "a"
            when = "true"
            reason_en = "r"
            reason_ko = "r"
            [[rules]]
            id = "block-big"
            action = "block"
            owner = "a"
            when = "amount_minor > 100"
            reason_en = "b"
            reason_ko = "b"
            [[rules]]
            id = "allow-trusted"
            action = "allow"
            owner = "a"
            when = "payee_category == 'trusted'"
            reason_en = "a"
            reason_ko = "a"
        "#;
        let policy = policy(&[both]);
        let facts = |amount_minor: i64, category: &str| Facts {
            amount_minor,
            payee_category: category.into(),
            ..Facts::default()
        };
        assert_eq!(decide(&policy, &facts(500, "trusted")).action, Action::Allow, "allow comes before block");
        assert_eq!(decide(&policy, &facts(500, "shop")).action, Action::Block, "block comes before review");
        assert_eq!(decide(&policy, &facts(5, "shop")).action, Action::Review);
    }

    #[test]
    fn the_bundle_in_force_at_the_events_time_decides() {
        let v1 = EU;
        let v2 = EU
            .replace("version = 1", "version = 2")
            .replace("amount_minor > 3000", "amount_minor > 2000")
            .replace("effective_from_s = 1735689600", &format!("effective_from_s = {NOW}"));
        let policy = policy(&[v1, &v2]);
        let facts = eur(2500, 0, 0);
        assert_eq!(policy.decide(NOW - 1, &Features::default(), &facts).action, Action::Allow, "v1 before v2's date");
        let later = policy.decide(NOW, &Features::default(), &facts);
        assert_eq!((later.action, later.rule.as_deref()), (Action::StepUp, Some("eu-psd2-sca@2/low-value-over-30")));
    }

    #[test]
    fn a_broken_bundle_is_refused_whole_and_says_why() {
        let bad = |when: &str| EU.replace("amount_minor > 3000", when);
        assert!(matches!(Bundle::compile(&bad("amount_minor >")), Err(PolicyError::Compile { .. })));
        assert!(matches!(
            Bundle::compile(&bad("amout_minor > 3000")),
            Err(PolicyError::UnknownVariable { variable, .. }) if variable == "amout_minor"
        ));
        assert!(matches!(Bundle::compile(&bad("amount_minor + 1")), Err(PolicyError::NotBoolean { .. })));
        assert!(matches!(Bundle::compile(&EU.replace("step_up", "maybe")), Err(PolicyError::UnknownAction { .. })));
        assert!(matches!(Bundle::compile("name = 1"), Err(PolicyError::Parse(_))));
        let mut policy = policy(&[EU]);
        let changed = Bundle::compile(&EU.replace("amount_minor > 3000", "amount_minor > 1")).unwrap();
        assert!(matches!(policy.add(changed), Err(PolicyError::Duplicate { .. })), "a version is never rewritten");
        assert_eq!(decide(&policy, &eur(3000, 0, 0)).action, Action::Allow, "the old rules still decide");
    }

    #[test]
    fn a_candidate_shows_exactly_where_decisions_would_differ() {
        let live = policy(&[EU, KR]);
        let candidate = live
            .with_replaced(Bundle::compile(&EU.replace("amount_minor > 3000", "amount_minor > 2000")).unwrap())
            .unwrap();
        let events: Vec<Facts> = (0..50).map(|n| eur(n * 100, 0, 0)).collect();
        let differ: Vec<i64> = events
            .iter()
            .filter(|facts| decide(&live, facts) != decide(&candidate, facts))
            .map(|facts| facts.amount_minor)
            .collect();
        assert_eq!(differ, (21..=30).map(|n| n * 100).collect::<Vec<_>>(), "EUR 20.01 to 30.00 would now need SCA");
        assert_eq!(candidate.in_force(NOW).len(), 2, "the other bundle is kept");
    }
}
