//! Plain-language explanations: for every refusal code the API answers (a problem's `code`, a
//! batch result, a tab's refusal), every dispute outcome, every liability reason and every
//! security-checklist item, what happened and why (`what`) and what to do next (`next`), in
//! every language obol ships.
//!
//! The catalogue is one TOML file per language in `crates/obol-app/messages/` (a table per key
//! with `what` and `next`, and one `[ui]` table with the words of the web dashboard), compiled
//! into the binary. A translator adds a language by adding a
//! file and a line to [`CATALOGUES`]; the coverage test fails until every key of every other
//! language is in it, and until every code the API can answer has a key.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The languages obol ships, with their catalogues.
pub const CATALOGUES: &[(&str, &str)] =
    &[("en", include_str!("../messages/en.toml")), ("ko", include_str!("../messages/ko.toml"))];

/// One explanation in one language.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// What happened, and why.
    pub what: String,
    /// What to do next.
    pub next: String,
}

/// An explanation in every language obol ships, by language tag (`en`, `ko`).
pub type Explanation = BTreeMap<String, Message>;

/// One language's file: the explanations by key, and the dashboard's words by key.
#[derive(Debug, Default, Deserialize)]
pub struct Catalogue {
    /// The words of the web dashboard (labels, headings, buttons), by key.
    #[serde(default)]
    pub ui: BTreeMap<String, String>,
    /// The explanation of every code, by code.
    #[serde(flatten)]
    pub messages: HashMap<String, Message>,
}

/// The parsed catalogues, by language (a file that does not parse is empty here, and the
/// coverage test names it).
fn catalogues() -> &'static Vec<(&'static str, Catalogue)> {
    static PARSED: OnceLock<Vec<(&'static str, Catalogue)>> = OnceLock::new();
    PARSED.get_or_init(|| {
        CATALOGUES
            .iter()
            .map(|(lang, text)| {
                let parsed = parse(text).unwrap_or_else(|error| {
                    tracing::error!(%lang, %error, "a message catalogue does not parse");
                    Catalogue::default()
                });
                (*lang, parsed)
            })
            .collect()
    })
}

/// The catalogue of `lang` as shipped: parse it (an error names the line).
pub fn parse(text: &str) -> Result<Catalogue, String> {
    toml::from_str(text).map_err(|error| error.to_string())
}

/// One language's whole catalogue as the dashboard reads it:
/// `{"lang", "ui": {key: text}, "messages": {code: {what, next}}}`; `None` for a language obol
/// does not ship.
pub fn catalogue_json(lang: &str) -> Option<String> {
    #[derive(Serialize)]
    struct Served<'a> {
        lang: &'a str,
        ui: &'a BTreeMap<String, String>,
        messages: BTreeMap<&'a String, &'a Message>,
    }
    let (lang, catalogue) = catalogues().iter().find(|(shipped, _)| *shipped == lang)?;
    let served = Served { lang, ui: &catalogue.ui, messages: catalogue.messages.iter().collect() };
    serde_json::to_string(&served).ok()
}

/// The languages obol ships (`en`, `ko`).
pub fn languages() -> impl Iterator<Item = &'static str> {
    CATALOGUES.iter().map(|(lang, _)| *lang)
}

/// The explanation of `key` in every language; a key a catalogue lacks falls back to the
/// catalogue's `unexplained` entry (the coverage test keeps that from happening).
pub fn explain(key: &str) -> Explanation {
    catalogues()
        .iter()
        .filter_map(|(lang, catalogue)| {
            let messages = &catalogue.messages;
            messages.get(key).or_else(|| messages.get("unexplained")).map(|m| ((*lang).to_string(), m.clone()))
        })
        .collect()
}

/// Whether every catalogue has `key`.
pub fn has(key: &str) -> bool {
    catalogues().iter().all(|(_, catalogue)| catalogue.messages.contains_key(key))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The string literals after `=>` in `text` between `start` and the next line that is
    /// only a closing brace at the start's indentation.
    fn codes_in(text: &str, start: &str) -> Vec<String> {
        let from = text.find(start).unwrap_or_else(|| panic!("{start} is in the source"));
        let body = &text[from..];
        let end = body.find("\n    }\n").or_else(|| body.find("\n}\n")).unwrap_or(body.len());
        body[..end].split("=> \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
    }

    /// Every code the API can answer a refusal with, and every other key an answer names.
    fn every_key() -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        keys.extend(codes_in(include_str!("error.rs"), "pub fn code(&self)"));
        keys.extend(codes_in(include_str!("error.rs"), "pub fn pay_reject_code"));
        keys.extend(codes_in(include_str!("../../obol-wire/src/httpsig.rs"), "pub fn code(&self)"));
        keys.extend(codes_in(include_str!("../../obol-core/src/identity.rs"), "impl IdentityResult"));
        keys.extend(obol_core::ledger::CreateTransferResult::ALL.iter().map(|r| r.as_str().to_string()));
        keys.extend(obol_core::ledger::CreateAccountResult::ALL.iter().map(|r| r.as_str().to_string()));
        keys.extend(obol_rules::liability::REASON_CODES.iter().map(|r| format!("liability.{r}")));
        keys.extend(crate::disputes::DEADLINE_REASONS.iter().map(|r| format!("liability.{r}")));
        keys.extend(crate::disputes::OUTCOME_REASONS.iter().map(|r| format!("dispute.{r}")));
        keys.extend(crate::checklist::ITEMS.iter().map(|item| format!("checklist.{item}")));
        keys.insert("unexplained".into());
        keys.remove("ok");
        keys
    }

    #[test]
    fn every_catalogue_parses_and_every_language_has_every_key() {
        let mut all_keys: BTreeSet<String> = BTreeSet::new();
        let mut all_ui_keys: BTreeSet<String> = BTreeSet::new();
        let mut parsed = Vec::new();
        for (lang, text) in CATALOGUES {
            let catalogue = parse(text).unwrap_or_else(|error| panic!("messages/{lang}.toml: {error}"));
            all_keys.extend(catalogue.messages.keys().cloned());
            all_ui_keys.extend(catalogue.ui.keys().cloned());
            parsed.push((lang, catalogue));
        }
        assert!(all_ui_keys.len() > 50, "the dashboard's words are in the catalogue: {}", all_ui_keys.len());
        for (lang, catalogue) in &parsed {
            let missing: Vec<&String> = all_keys.iter().filter(|k| !catalogue.messages.contains_key(*k)).collect();
            assert!(missing.is_empty(), "messages/{lang}.toml lacks {missing:?}");
            for (key, message) in &catalogue.messages {
                assert!(!message.what.trim().is_empty() && !message.next.trim().is_empty(), "{lang}: {key} is empty");
            }
            let missing: Vec<&String> = all_ui_keys.iter().filter(|k| !catalogue.ui.contains_key(*k)).collect();
            assert!(missing.is_empty(), "messages/{lang}.toml [ui] lacks {missing:?}");
            for (key, text) in &catalogue.ui {
                assert!(!text.trim().is_empty(), "{lang}: ui.{key} is empty");
            }
            let served: serde_json::Value =
                serde_json::from_str(&catalogue_json(lang).expect("a shipped language")).expect("JSON");
            assert_eq!(served["ui"].as_object().map(|ui| ui.len()), Some(catalogue.ui.len()));
            assert_eq!(served["messages"].as_object().map(|m| m.len()), Some(catalogue.messages.len()));
        }
        assert_eq!(catalogue_json("xx"), None);
    }

    #[test]
    fn every_refusal_code_of_the_api_has_an_explanation_in_every_language() {
        let keys = every_key();
        assert!(keys.len() > 150, "the scan found the codes: {}", keys.len());
        let missing: Vec<&String> = keys.iter().filter(|k| !has(k)).collect();
        assert!(missing.is_empty(), "no explanation for {} keys: {missing:?}", missing.len());
    }

    #[test]
    fn an_explanation_comes_in_english_and_korean() {
        let explained = explain("exceeds_credits");
        assert_eq!(explained.keys().map(String::as_str).collect::<Vec<_>>(), ["en", "ko"]);
        assert!(explained["ko"].what.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)), "Hangul");
        assert_eq!(explain("no_such_key_anywhere"), explain("unexplained"));
    }
}
