//! What the criterion bench and the profiling harness share: each shipped rule compiled natively
//! and prepared with the same document the sandbox gets, so a native and a WebAssembly run see
//! the same bytes.

use medrl::reward::LoadedRule;

/// A rule compiled natively: sample JSON in, output length out.
pub type Native = Box<dyn Fn(&[u8]) -> usize>;

/// The rule compiled natively, prepared with the same document the sandbox gets.
pub fn native(rule: &LoadedRule) -> Native {
    let doc = rule.prepare_document();
    match rule.manifest.id.as_str() {
        "chain" => {
            let state = rule_chain::prepare_json(doc).unwrap();
            Box::new(move |s| rule_chain::evaluate_prepared_json(&state, s).len())
        }
        "emergency" => {
            let state = rule_emergency::prepare_json(doc).unwrap();
            Box::new(move |s| rule_emergency::evaluate_prepared_json(&state, s).len())
        }
        "risk" => {
            let state = rule_risk::prepare_json(doc).unwrap();
            Box::new(move |s| rule_risk::evaluate_prepared_json(&state, s).len())
        }
        "verbosity" => {
            let state = rule_verbosity::prepare_json(doc).unwrap();
            Box::new(move |s| rule_verbosity::evaluate_prepared_json(&state, s).len())
        }
        other => panic!("no native build of rule {other}"),
    }
}
