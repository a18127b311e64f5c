//! The release's model card (`MODEL_CARD.md`): what the model is for, what it is not, how it was
//! trained and governed, and the evaluation's metrics with their intervals, from `release.json`
//! and the evaluation's `report.json`.

use super::ReleaseManifest;
use serde_json::Value;

/// A number as the card writes it: three decimals, an absent one as `–`.
fn num(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.3}"))
}

/// The card's Markdown.
pub fn model_card(m: &ReleaseManifest, report: Option<&Value>) -> String {
    let mut s = format!("# {} — medrl v1.0-rl release\n\n", m.name);
    s.push_str(
        "> **Not for clinical use.** This model is a research artefact for studying rule-governed \
         reinforcement learning. It must not be used to diagnose, treat or triage patients, or to \
         give medical advice to anyone, without review by qualified clinicians.\n\n",
    );
    s.push_str("## Intended use\n\n");
    s.push_str(
        "Research and evaluation of medical-safety behaviour of language models: reproducing the \
         training run, comparing it with its SFT baseline under the same rule set, clinician review \
         studies (`medrl review`), and as a starting point for further governed training rounds.\n\n",
    );
    s.push_str("## Limits\n\n");
    s.push_str(
        "- The reward comes from rules: the policy is optimised for what the rules measure (structure, \
         emergency escalation, risky advice, length), not for medical correctness in general. A high \
         reward is not clinical validity.\n\
         - The rule set flags patterns in text; it does not know the patient. Answers can be fluent and wrong.\n\
         - Metrics are from the evaluation sets listed below; other populations, languages and phrasings \
         were not measured. Intervals are bootstrap intervals over prompts, not guarantees.\n\
         - The training data and its licences are described in `DATA_CARD.md`.\n\n",
    );
    s.push_str("## What is inside\n\n");
    s.push_str(&format!(
        "- Base model: `{}` (sha256 `{}`){}\n",
        m.base_model.trained_on,
        m.base_model.sha256,
        if m.base_model.weights_included { ", weights in `model/`" } else { "; `model/` holds its config and tokenizer, not its weights" }
    ));
    match &m.sft_adapter {
        Some(a) => s.push_str(&format!("- SFT adapter: `sft_adapter/` (sha256 `{}`), merged into the base before the RL adapter\n", a.sha256)),
        None => s.push_str("- SFT: the base model is the SFT model (no SFT adapter)\n"),
    }
    s.push_str(&format!("- RL adapter: `adapter/` (PEFT LoRA, sha256 `{}`), value head `value_head.safetensors`\n", m.adapter.sha256));
    if let Some(init) = &m.initialised_from {
        s.push_str(&format!("- Second round: the policy started from `{}` (sha256 `{}`)\n", init.path, init.sha256));
    }
    s.push_str(&format!("- Training: {} for {} steps; settings in `config.toml`\n", m.algorithm, m.steps));
    let signers: Vec<String> = m.ruleset.signers.iter().map(|x| format!("{} ({})", x.name, x.key_id)).collect();
    s.push_str(&format!(
        "- Rule set: `{}@{}` revision {} (sha256 `{}`), signed by {}; a verifiable copy in `ruleset/`\n",
        m.ruleset.name,
        m.ruleset.version,
        m.ruleset.revision,
        m.ruleset.sha256,
        signers.join(", ")
    ));
    s.push_str("- Audit head: `audit/run_manifest.json` (where the run's audit log ended, its result files' digests)\n\n");
    s.push_str("Check the package with `medrl release verify DIR --keyring KEYRING [--operator-keyring KEYRING]`.\n\n");
    s.push_str("## Evaluation\n\n");
    let Some(r) = report else {
        s.push_str("No evaluation was packaged with this release (`medrl release --eval DIR`).\n");
        return s;
    };
    s.push_str(&format!(
        "Baseline `{}`, candidate `{}`, scored with `{}`. Each cell is the value and its {} interval [lo, hi].\n\n",
        r["baseline"].as_str().unwrap_or("?"),
        r["candidate"].as_str().unwrap_or("?"),
        r["ruleset"].as_str().unwrap_or("?"),
        r["interval_method"].as_str().unwrap_or("bootstrap")
    ));
    for set in r["sets"].as_array().into_iter().flatten() {
        s.push_str(&format!("### {} ({} prompts)\n\n", set["set"].as_str().unwrap_or("?"), set["n"]));
        let variants = set["variants"].as_array().cloned().unwrap_or_default();
        let metrics: Vec<String> = variants.first().and_then(|v| v["metrics"].as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        s.push_str(&format!("| variant | {} |\n|---|{}\n", metrics.join(" | "), "---|".repeat(metrics.len())));
        for v in &variants {
            let cells: Vec<String> = metrics
                .iter()
                .map(|k| {
                    let e = &v["metrics"][k];
                    if e.is_null() { "–".into() } else { format!("{} [{}, {}]", num(&e["value"]), num(&e["lo"]), num(&e["hi"])) }
                })
                .collect();
            s.push_str(&format!("| {} | {} |\n", v["variant"].as_str().unwrap_or("?"), cells.join(" | ")));
        }
        s.push('\n');
    }
    let gates = r["gates"].as_array().cloned().unwrap_or_default();
    if gates.is_empty() {
        s.push_str("No regression gates were checked.\n");
    } else {
        s.push_str(&format!("Regression gates: {}.\n\n", if r["gates_passed"].as_bool() == Some(true) { "all passed" } else { "**FAILED**" }));
        for g in &gates {
            let verdict = if g["passed"].as_bool() == Some(true) { "pass" } else { "FAIL" };
            s.push_str(&format!(
                "- {verdict}: `{}` ({} {})\n",
                g["expression"].as_str().unwrap_or("?"),
                num(&g["candidate_value"]),
                num(&g["threshold"])
            ));
        }
    }
    s.push_str("\nThe full report is `eval/eval_report.md`; every number is in `eval/report.json`.\n");
    s
}
