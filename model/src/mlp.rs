//! The SwiGLU MLP: `down_proj(silu(gate_proj(x)) ⊙ up_proj(x))`.

use candle_core::Tensor;

use super::config::ModelConfig;
use super::error::Result;
use super::linear::Linear;
use super::lora::LoraMode;
use super::weights::Weights;

/// `mlp` of one decoder layer.
#[derive(Clone, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// Loads `{prefix}.{gate,up,down}_proj`.
    pub fn new(cfg: &ModelConfig, w: &Weights, prefix: &str) -> Result<Self> {
        let (hid, inter, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(w, &format!("{prefix}.gate_proj"), hid, inter, bias)?,
            up_proj: Linear::new(w, &format!("{prefix}.up_proj"), hid, inter, bias)?,
            down_proj: Linear::new(w, &format!("{prefix}.down_proj"), inter, hid, bias)?,
        })
    }

    /// `[b, t, hidden]` → `[b, t, hidden]`.
    pub fn forward(&self, x: &Tensor, mode: LoraMode) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x, mode)?.silu()?;
        let up = self.up_proj.forward(x, mode)?;
        self.down_proj.forward(&(gate * up)?, mode)
    }
}
