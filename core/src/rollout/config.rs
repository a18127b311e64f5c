//! `SamplingConfig`: how the sampler draws each next token and when it stops.

use serde::{Deserialize, Serialize};

/// How tokens are drawn. Every field has a default, so `SamplingConfig::default()` is plain
/// sampling from the model's distribution (temperature 1, no truncation), the PPO setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Logits are divided by this before the softmax; 0 means greedy (argmax). Default 1.0.
    /// The trainer must divide by the same value when it recomputes logprobs.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens before sampling; 0 turns it off. Default 0.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (nucleus
    /// sampling, applied after `top_k`); 1.0 turns it off. Default 1.0.
    pub top_p: f64,
    /// Most tokens generated per row; a row also stops at its first stop token. Default 256.
    pub max_new_tokens: usize,
    /// Seed of the per-row ChaCha8 streams (row `r` uses stream `r`). Default 0.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> SamplingConfig {
        SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0, max_new_tokens: 256, seed: 0 }
    }
}

impl SamplingConfig {
    /// Greedy decoding (temperature 0) for `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> SamplingConfig {
        SamplingConfig { temperature: 0.0, max_new_tokens, ..SamplingConfig::default() }
    }

    /// Checks the ranges: temperature finite and ≥ 0, top_p in (0, 1], max_new_tokens ≥ 1.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!("temperature must be a finite number ≥ 0 (0 = greedy), got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1] (1 = off), got {}", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return Err("max_new_tokens must be at least 1".into());
        }
        Ok(())
    }

    /// Whether a draw needs the random stream (greedy does not).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The temperature the logprobs are taken at: the sampling temperature, or 1 when greedy
    /// (argmax has no temperature; its logprobs are the model's own).
    pub fn logprob_temperature(&self) -> f64 {
        if self.is_greedy() { 1.0 } else { self.temperature }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields_and_unknown_fields_are_refused() {
        let c: SamplingConfig = toml::from_str("temperature = 0.7\ntop_p = 0.9").unwrap();
        assert_eq!(c, SamplingConfig { temperature: 0.7, top_p: 0.9, ..SamplingConfig::default() });
        let err = toml::from_str::<SamplingConfig>("temprature = 1.0").unwrap_err().to_string();
        assert!(err.contains("unknown field `temprature`"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let bad = |c: SamplingConfig| c.validate().unwrap_err();
        assert!(bad(SamplingConfig { temperature: -1.0, ..Default::default() }).contains("temperature"));
        assert!(bad(SamplingConfig { top_p: 0.0, ..Default::default() }).contains("top_p"));
        assert!(bad(SamplingConfig { top_p: 1.5, ..Default::default() }).contains("top_p"));
        assert!(bad(SamplingConfig { max_new_tokens: 0, ..Default::default() }).contains("max_new_tokens"));
        assert!(SamplingConfig::greedy(4).validate().is_ok());
        assert_eq!(SamplingConfig::greedy(4).logprob_temperature(), 1.0);
    }
}
