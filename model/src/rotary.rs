//! Rotary position embeddings (RoPE), computed in f32 from each row's own position ids, so a
//! left-padded row's first real token is at position 0 exactly as in an unpadded run.
//!
//! The angles are `position · inv_freq` computed per forward pass (a `[b, t, head_dim/2]` outer
//! product, cheap next to attention) instead of a `max_position_embeddings`-long table: no table
//! to size, and no position that falls off its end. The rotation is the "rotate half" form Hugging
//! Face checkpoints are trained with: `x·cos + rotate_half(x)·sin`, with `cos = [cos θ, cos θ]`.

use candle_core::{D, DType, Device, Tensor};

use super::config::{ModelConfig, RopeScaling};
use super::error::Result;

/// The inverse frequencies of one model; shared by all its layers.
#[derive(Clone, Debug)]
pub struct Rotary {
    inv_freq: Tensor,
}

/// `cos` and `sin` for one forward pass, `[b, 1, t, head_dim]` each, f32.
pub struct RotaryAngles {
    cos: Tensor,
    sin: Tensor,
}

/// `inv_freq[i] = 1 / θ^(2i/d)`, then the config's scaling (HF `rope_init_fn`s).
pub fn inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f32> = (0..d / 2).map(|i| (1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64)) as f32).collect();
    match &cfg.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| (*f as f64 / factor) as f32).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, and the band
            // between them interpolated smoothly.
            let old = *original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let f = f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let scaled = if wavelen > low_wavelen { f / factor } else { f };
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                    } else {
                        scaled as f32
                    }
                })
                .collect()
        }
    }
}

impl Rotary {
    /// The inverse frequencies of `cfg` on `device`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let f = inv_freq(cfg);
        let n = f.len();
        Ok(Rotary { inv_freq: Tensor::from_vec(f, (1, 1, n), device)? })
    }

    /// Angles for `position_ids: [b, t]` (any integer dtype).
    pub fn angles(&self, position_ids: &Tensor) -> Result<RotaryAngles> {
        let pos = position_ids.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?; // [b, t, 1]
        let freqs = pos.broadcast_mul(&self.inv_freq)?; // [b, t, d/2]
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?.unsqueeze(1)?; // [b, 1, t, d]
        Ok(RotaryAngles { cos: emb.cos()?, sin: emb.sin()? })
    }
}

impl RotaryAngles {
    /// Rotates `x: [b, heads, t, head_dim]` in f32 and returns it in its own dtype.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let y = (x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?)?;
        Ok(y.to_dtype(dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rotation_at_position_zero_is_identity_and_keeps_the_norm() {
        let cfg = ModelConfig::from_json(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"rms_norm_eps":1e-5,"vocab_size":4}"#,
            Path::new("c"),
        )
        .unwrap();
        let dev = Device::Cpu;
        let rot = Rotary::new(&cfg, &dev).unwrap();
        let x = Tensor::arange(1f32, 9., &dev).unwrap().reshape((1, 2, 1, 4)).unwrap();
        let at0 = rot.angles(&Tensor::new(&[[0u32]], &dev).unwrap()).unwrap().apply(&x).unwrap();
        assert_eq!(at0.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let at5 = rot.angles(&Tensor::new(&[[5u32]], &dev).unwrap()).unwrap().apply(&x).unwrap();
        let n0 = x.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        let n5 = at5.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((n0 - n5).abs() < 1e-4, "{n0} vs {n5}");
        // head_dim 4: inv_freq = [1, 1/100]; first pair rotates by 5 rad.
        let v = at5.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (c, s) = (5f32.cos(), 5f32.sin());
        assert!((v[0] - (1.0 * c - 3.0 * s)).abs() < 1e-5);
    }
}
