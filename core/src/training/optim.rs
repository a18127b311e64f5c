//! The optimiser side of a step: global gradient-norm clipping with a non-finite check, AdamW with
//! state a checkpoint can save and restore exactly, and the learning-rate schedule.
//!
//! candle-nn ships an AdamW, but its moment buffers are private, so a resumed run could not continue
//! bit for bit; this one keeps `exp_avg`/`exp_avg_sq` by parameter name.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Gradients of an optimiser's parameters, in its parameter order (`None`: no gradient reached
/// that parameter). Micro-batches add theirs up before one update (gradient accumulation).
pub struct Grads(pub Vec<Option<Tensor>>);

impl Grads {
    /// Adds another micro-batch's gradients.
    pub fn add(&mut self, other: Grads) -> Result<()> {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = match (mine.take(), theirs) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.or(b),
            };
        }
        Ok(())
    }

    /// Global L2 norm `sqrt(Σ_p ‖g_p‖²)`. The caller skips the step when it is not finite
    /// (implementation detail: "skip a step on non-finite values").
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0f64;
        for g in self.0.iter().flatten() {
            sq += f64::from(g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
        Ok(sq.sqrt())
    }
}

/// The factor that brings a gradient of norm `norm` down to `max_norm` (global-norm clipping,
/// Pascanu et al. 2013): `min(1, max_norm / norm)`.
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if norm.is_finite() && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 }
}

/// AdamW's coefficients (Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// β₁ (default 0.9).
    pub beta1: f64,
    /// β₂ (default 0.999).
    pub beta2: f64,
    /// ε (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 0.0: LoRA adapters start at zero, decay pulls them back).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

struct Slot {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over named parameters.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot { name, exp_avg: zeros.clone(), exp_avg_sq: zeros, var })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { config, slots, step: 0 })
    }

    /// The gradients `store` holds for this optimiser's parameters.
    pub fn grads_of(&self, store: &GradStore) -> Grads {
        Grads(self.slots.iter().map(|s| store.get(s.var.as_tensor()).cloned()).collect())
    }

    /// The parameters, by name.
    pub fn params(&self) -> Vec<(String, Var)> {
        self.slots.iter().map(|s| (s.name.clone(), s.var.clone())).collect()
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr`, each gradient multiplied by `grad_scale` first (the
    /// clipping factor, or 1/accumulation steps). Parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &Grads, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        for (s, g) in self.slots.iter_mut().zip(&grads.0) {
            let Some(g) = g else { continue };
            let g = g.affine(grad_scale, 0.0)?;
            s.exp_avg = ((&s.exp_avg * beta1)? + (&g * (1.0 - beta1))?)?;
            s.exp_avg_sq = ((&s.exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&s.exp_avg / bias1)?;
            let v_hat = (&s.exp_avg_sq / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
            let theta = s.var.as_tensor();
            let decayed = (theta * (1.0 - lr * weight_decay))?;
            s.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Saves the moments and the step count (safetensors: `<name>.exp_avg`, `<name>.exp_avg_sq`, `step`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for s in &self.slots {
            map.insert(format!("{}.exp_avg", s.name), s.exp_avg.clone());
            map.insert(format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.clone());
        }
        map.insert("step".to_string(), Tensor::new(&[self.step as i64], &Device::Cpu)?);
        candle_core::safetensors::save(&map, path)
    }

    /// Restores what [`AdamW::save`] wrote; every parameter must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.slots.first().map(|s| s.var.device().clone()).unwrap_or(Device::Cpu);
        let map = candle_core::safetensors::load(path, &device)?;
        let get =
            |k: &str| map.get(k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("optimizer state {} has no tensor `{k}`", path.display())));
        for s in &mut self.slots {
            let m = get(&format!("{}.exp_avg", s.name))?;
            let v = get(&format!("{}.exp_avg_sq", s.name))?;
            if m.dims() != s.var.dims() || v.dims() != s.var.dims() {
                return Err(candle_core::Error::Msg(format!(
                    "optimizer state for `{}` has shape {:?}, the parameter {:?}",
                    s.name,
                    m.dims(),
                    s.var.dims()
                )));
            }
            s.exp_avg = m;
            s.exp_avg_sq = v;
        }
        self.step = get("step")?.to_vec1::<i64>()?.first().copied().unwrap_or(0) as u64;
        Ok(())
    }
}

/// Learning rate over optimiser steps: linear warm-up from 0, then cosine or linear decay to
/// `min_ratio · peak` at `total_steps`, constant after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps (default 0).
    pub warmup_steps: u64,
    /// Steps over which to decay; 0 keeps the rate constant after warm-up.
    pub total_steps: u64,
    /// Final rate as a share of the peak (default 0.1).
    pub min_ratio: f64,
    /// Cosine (true, default) or linear decay.
    pub cosine: bool,
}

impl LrSchedule {
    pub fn constant(peak: f64) -> Self {
        LrSchedule { peak, warmup_steps: 0, total_steps: 0, min_ratio: 1.0, cosine: false }
    }

    /// The rate for the `step`-th update (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if self.total_steps <= self.warmup_steps {
            return self.peak;
        }
        let progress = ((step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64).min(1.0);
        let shape = if self.cosine { 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) } else { 1.0 - progress };
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_first_step_by_hand() {
        // First step: m̂ = g, v̂ = g², update = g/(|g|+ε) ≈ sign(g): θ = 1 − 0.1·1 = 0.9 for g = 3.
        let d = Device::Cpu;
        let w = Var::new(&[1f32, -1.0], &d).unwrap();
        let loss = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        let g = opt.grads_of(&grads);
        opt.step(&g, 0.1, 1.0).unwrap();
        let v = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.1).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn adamw_state_round_trips() {
        let d = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let run = |resume: bool| {
            let w = Var::new(&[0.5f32, 2.0, -1.0], &d).unwrap();
            let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
            for i in 0..4 {
                if resume && i == 2 {
                    // Rebuild from saved state, as a resumed run does.
                    let saved = w.as_tensor().copy().unwrap();
                    opt.save(&dir.path().join("opt.safetensors")).unwrap();
                    let w2 = Var::from_tensor(&saved).unwrap();
                    opt = AdamW::new(vec![("w".into(), w2.clone())], AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
                    opt.load(&dir.path().join("opt.safetensors")).unwrap();
                    return (w2, opt, i);
                }
                let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
                let g = opt.grads_of(&loss.backward().unwrap());
                opt.step(&g, 0.05, 1.0).unwrap();
            }
            (w, opt, 4)
        };
        let (w_full, _, _) = run(false);
        let (w, mut opt, from) = run(true);
        for _ in from..4 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            let g = opt.grads_of(&loss.backward().unwrap());
            opt.step(&g, 0.05, 1.0).unwrap();
        }
        assert_eq!(opt.step_count(), 4);
        assert_eq!(w.as_tensor().to_vec1::<f32>().unwrap(), w_full.as_tensor().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn grad_norm_by_hand() {
        // g = [3, 4] → ‖g‖ = 5; max 1 → scale ≈ 0.2.
        let d = Device::Cpu;
        let w = Var::new(&[0f32, 0.0], &d).unwrap();
        let loss = w.as_tensor().mul(&Tensor::new(&[3f32, 4.0], &d).unwrap()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let opt = AdamW::new(vec![("w".into(), w)], AdamWConfig::default()).unwrap();
        let mut g = opt.grads_of(&grads);
        let norm = g.global_norm().unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((clip_scale(norm, 1.0) - 0.2).abs() < 1e-6);
        assert_eq!(clip_scale(f64::NAN, 1.0), 1.0);
        // Accumulating the same gradient twice doubles it: norm 10.
        g.add(opt.grads_of(&grads)).unwrap();
        assert!((g.global_norm().unwrap() - 10.0).abs() < 1e-5);
    }

    #[test]
    fn schedule_by_hand() {
        let s = LrSchedule { peak: 1.0, warmup_steps: 2, total_steps: 6, min_ratio: 0.0, cosine: false };
        // warm-up: 0.5, 1.0; then linear over 4 steps: 1.0, 0.75, 0.5, 0.25; then 0.
        let got: Vec<f64> = (0..8).map(|i| s.at(i)).collect();
        assert_eq!(got, vec![0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
        let c = LrSchedule { cosine: true, ..s };
        assert!((c.at(4) - 0.5).abs() < 1e-12); // halfway through the cosine
    }
}
