//! Throughput measurement of rule sets, shared by `medrl bench rules` and `cargo bench`.

use crate::reward::RuleSetScorer;
use medrl_sdk::Sample;
use std::time::{Duration, Instant};

/// Realistic answers of about `bytes` UTF-8 bytes each, alternating zh and en, emergency and
/// general prompts, written in the structured chain the shipped rules check.
pub fn synthetic_samples(n: usize, bytes: usize) -> Vec<Sample> {
    const ZH: [&str; 4] = [
        "【分析】患者突发胸痛伴出冷汗，需警惕急性冠脉综合征。",
        "【可能原因】心肌缺血、主动脉夹层或肺栓塞都可能引起类似症状。",
        "【建议】请立即拨打120，保持安静休息，不要自行驾车，不要自行服用抗生素。",
        "【就医指征】胸痛持续不缓解、呼吸困难或意识改变时必须立即就医。",
    ];
    const EN: [&str; 4] = [
        "Assessment: Sudden chest pain with sweating may be a heart attack. ",
        "Possible causes: Reduced blood flow to the heart, a torn aorta, or a clot in the lung. ",
        "Advice: Call 911 now, rest, and do not drive yourself; do not take antibiotics without a prescription. ",
        "When to seek care: Chest pain that does not ease, shortness of breath or fainting need the emergency department. ",
    ];
    (0..n)
        .map(|i| {
            let zh = i % 2 == 0;
            let parts: &[&str; 4] = if zh { &ZH } else { &EN };
            let mut response = String::new();
            let mut k = 0;
            while response.len() < bytes {
                // Repeat sections with a varying detail so the text is not one n-gram loop.
                response.push_str(parts[k % 4]);
                if k >= 4 {
                    response.push_str(&format!("（第{}次复诊）", k + i % 7));
                }
                k += 1;
            }
            let emergency = i % 4 < 2;
            serde_json::from_value(serde_json::json!({
                "id": format!("bench-{i}"),
                "prompt": if zh { "胸口疼还出冷汗怎么办？" } else { "Chest pain and sweating, what should I do?" },
                "response": response,
                "lang": if zh { "zh" } else { "en" },
                "category": if emergency { "emergency" } else { "general" },
                "risk": if emergency { "high" } else { "low" },
                "tags": ["bench"],
                "expect": {"emergency_signs": if emergency { if zh { vec!["胸痛"] } else { vec!["chest pain"] } } else { vec![] }},
            }))
            .expect("the synthetic sample matches the Sample schema")
        })
        .collect()
}

/// Samples per second of `scorer` on `samples` with `threads` workers, best of `rounds`.
pub fn samples_per_second(scorer: &RuleSetScorer, samples: &[Sample], threads: usize, rounds: usize) -> Result<f64, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut best = Duration::MAX;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let scores = pool.install(|| scorer.score_batch(samples));
        best = best.min(start.elapsed());
        assert_eq!(scores.len(), samples.len());
    }
    Ok(samples.len() as f64 / best.as_secs_f64())
}

/// Mean microseconds per evaluation of each rule, single-threaded, over `samples`, in runs of
/// up to 256 samples per instance as the scorer does.
pub fn per_rule_micros(scorer: &RuleSetScorer, samples: &[Sample]) -> Vec<(String, f64)> {
    let encoded: Vec<Vec<u8>> = samples.iter().map(crate::reward::scorer::encode_sample).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    scorer
        .rules
        .iter()
        .map(|rule| {
            let start = Instant::now();
            for run in slices.chunks(256) {
                std::hint::black_box(rule.evaluate_many(run));
            }
            (rule.manifest.reference(), start.elapsed().as_secs_f64() * 1e6 / samples.len() as f64)
        })
        .collect()
}
