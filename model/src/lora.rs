//! LoRA (Hu et al. 2021, <https://arxiv.org/abs/2106.09685>): a trainable low-rank update
//! `ΔW = s · B·A` beside a frozen projection, with `s = α / r`, or `α / √r` for rsLoRA
//! (Kalajdzievski 2023, <https://arxiv.org/abs/2312.03732>).
//!
//! `A: [r, in]` and `B: [out, r]` are f32 [`Var`]s whatever the base dtype, named and shaped as
//! PEFT names and shapes them. `A` starts Kaiming-uniform and `B` at zero (PEFT's default), so a
//! fresh adapter leaves the model unchanged.

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::error::{ModelError, Result};

/// The projections LoRA may target, by their Hugging Face module names.
pub const TARGETABLE: &[&str] = &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// A LoRA adapter's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update. Default 8.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scaling numerator `α`. Default 16.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter's input during training (`LoraMode::Train`). Default 0.05.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Module names to adapt, from `q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`.
    /// Default: the four attention projections.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// rsLoRA: scale by `α / √r` instead of `α / r`. Default false.
    #[serde(default)]
    pub use_rslora: bool,
}

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_dropout() -> f64 {
    0.05
}
fn default_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec()
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: default_r(), alpha: default_alpha(), dropout: default_dropout(), target_modules: default_targets(), use_rslora: false }
    }
}

impl LoraConfig {
    /// The scale `s` applied to `B·A·x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.alpha / (self.r as f64).sqrt() } else { self.alpha / self.r as f64 }
    }

    /// Checks the rank, dropout and target names.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(ModelError::InvalidLora("r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::InvalidLora(format!("dropout must be in [0, 1), got {}", self.dropout)));
        }
        if self.target_modules.is_empty() {
            return Err(ModelError::InvalidLora("target_modules is empty".into()));
        }
        for t in &self.target_modules {
            if !TARGETABLE.contains(&t.as_str()) {
                return Err(ModelError::InvalidLora(format!("unknown target module `{t}`; targetable: {}", TARGETABLE.join(", "))));
            }
        }
        Ok(())
    }

    /// Whether the module `name` (`q_proj`, …) is adapted.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| t == name)
    }
}

/// Whether a forward pass uses the adapter, and whether it is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraMode {
    /// The adapted policy, no dropout, differentiable: the PPO training forward, whose logprobs
    /// must equal sampling's.
    On,
    /// The adapted policy, no dropout, with the adapter detached from autograd: sampling and
    /// other no-grad passes. Same values as `On`, but no graph is recorded, so intermediate
    /// activations are freed as soon as they are used.
    Inference,
    /// The base weights alone: the reference policy, without a second copy of the model.
    Off,
    /// The adapted policy with LoRA dropout, masks drawn from `seed` (same seed, same masks).
    Train { seed: u64 },
}

/// The LoRA update of one projection.
#[derive(Clone, Debug)]
pub struct LoraLayer {
    /// `[r, in]`, PEFT's `lora_A.weight`.
    pub lora_a: Var,
    /// `[out, r]`, PEFT's `lora_B.weight`.
    pub lora_b: Var,
    scale: f64,
    dropout: f64,
    /// Distinguishes this layer's dropout stream from the other layers'.
    stream: u64,
}

impl LoraLayer {
    /// A fresh update for a `[out, in]` projection: `A ~ U(−1/√in, 1/√in)` (Kaiming-uniform
    /// with a = √5, as PEFT), `B = 0`.
    pub fn init(in_features: usize, out_features: usize, cfg: &LoraConfig, rng: &mut ChaCha8Rng, stream: u64, device: &Device) -> Result<Self> {
        let bound = 1.0 / (in_features as f64).sqrt();
        let a: Vec<f32> = (0..cfg.r * in_features).map(|_| ((unit(rng) * 2.0 - 1.0) * bound) as f32).collect();
        let a = Tensor::from_vec(a, (cfg.r, in_features), device)?;
        let b = Tensor::zeros((out_features, cfg.r), DType::F32, device)?;
        Self::from_tensors(a, b, cfg, stream)
    }

    /// An update from existing `A: [r, in]` and `B: [out, r]` (converted to f32).
    pub fn from_tensors(a: Tensor, b: Tensor, cfg: &LoraConfig, stream: u64) -> Result<Self> {
        Ok(LoraLayer {
            lora_a: Var::from_tensor(&a.to_dtype(DType::F32)?)?,
            lora_b: Var::from_tensor(&b.to_dtype(DType::F32)?)?,
            scale: cfg.scale(),
            dropout: cfg.dropout,
            stream,
        })
    }

    /// `s · B·A·dropout(x)` for `x: [m, in]`, f32 out.
    pub fn forward(&self, x: &Tensor, mode: LoraMode) -> Result<Tensor> {
        let mut x = x.to_dtype(DType::F32)?;
        if let LoraMode::Train { seed } = mode
            && self.dropout > 0.0
        {
            x = x.broadcast_mul(&self.dropout_mask(x.dims(), seed, x.device())?)?;
        }
        let (a, b) = match mode {
            LoraMode::Inference => (self.lora_a.as_tensor().detach(), self.lora_b.as_tensor().detach()),
            _ => (self.lora_a.as_tensor().clone(), self.lora_b.as_tensor().clone()),
        };
        let h = x.matmul(&a.t()?)?;
        Ok((h.matmul(&b.t()?)? * self.scale)?)
    }

    /// `s · B·A`, `[out, in]` f32: the update a merge adds to the base weight.
    pub fn delta_weight(&self) -> Result<Tensor> {
        Ok((self.lora_b.as_tensor().matmul(self.lora_a.as_tensor())? * self.scale)?)
    }

    /// Inverted dropout: each element kept with probability `1 − p` and scaled by `1/(1 − p)`.
    fn dropout_mask(&self, dims: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ self.stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let keep = (1.0 / (1.0 - self.dropout)) as f32;
        let mask: Vec<f32> = (0..n).map(|_| if unit(&mut rng) < self.dropout { 0.0 } else { keep }).collect();
        Ok(Tensor::from_vec(mask, dims, device)?)
    }
}

/// A uniform draw in [0, 1) from 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_follows_lora_and_rslora() {
        let mut c = LoraConfig { r: 16, alpha: 32.0, ..LoraConfig::default() };
        assert_eq!(c.scale(), 2.0); // 32 / 16
        c.use_rslora = true;
        assert_eq!(c.scale(), 8.0); // 32 / √16
    }

    #[test]
    fn config_validation_names_the_bad_value() {
        let c = LoraConfig { target_modules: vec!["qproj".into()], ..LoraConfig::default() };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("qproj") && msg.contains("q_proj"), "{msg}");
        assert!(LoraConfig { r: 0, ..LoraConfig::default() }.validate().is_err());
        let c: std::result::Result<LoraConfig, _> = toml::from_str("rank = 4");
        assert!(c.is_err(), "unknown fields are refused");
    }

    #[test]
    fn dropout_masks_repeat_for_a_seed_and_keep_the_expectation() {
        let cfg = LoraConfig { dropout: 0.25, ..LoraConfig::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let l = LoraLayer::init(4, 4, &cfg, &mut rng, 3, &Device::Cpu).unwrap();
        let m1 = l.dropout_mask(&[64, 64], 7, &Device::Cpu).unwrap();
        let m2 = l.dropout_mask(&[64, 64], 7, &Device::Cpu).unwrap();
        let m3 = l.dropout_mask(&[64, 64], 8, &Device::Cpu).unwrap();
        let v1 = m1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v1, m2.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_ne!(v1, m3.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let mean = v1.iter().sum::<f32>() / v1.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }
}
