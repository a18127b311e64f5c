//! The value head: one linear map from the decoder's final hidden state to a scalar, on the shared
//! trunk (the policy's own hidden states), zero-initialised so the first value estimates are 0 and
//! the critic does not inject noise into the first advantages. f32 `Var`s, saved beside the adapter
//! as `value_head.safetensors` (`v_head.weight` `[1, hidden]`, `v_head.bias` `[1]`, TRL's names).

use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

pub struct ValueHead {
    pub weight: Var,
    pub bias: Var,
}

impl ValueHead {
    pub fn zeros(hidden: usize, device: &Device) -> Result<Self> {
        Ok(ValueHead { weight: Var::zeros((1, hidden), DType::F32, device)?, bias: Var::zeros(1, DType::F32, device)? })
    }

    /// `[batch, len, hidden]` → `[batch, len]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = hidden.to_dtype(DType::F32)?;
        let (b, t, d) = h.dims3()?;
        let v = h.reshape((b * t, d))?.matmul(&self.weight.as_tensor().t()?)?.broadcast_add(self.bias.as_tensor())?;
        v.reshape((b, t))
    }

    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![("v_head.weight".into(), self.weight.clone()), ("v_head.bias".into(), self.bias.clone())]
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self.vars().into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        candle_core::safetensors::save(&map, path)
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, device)?;
        let get = |k: &str| map.get(k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("{} has no tensor `{k}`", path.display())));
        Ok(ValueHead { weight: Var::from_tensor(&get("v_head.weight")?)?, bias: Var::from_tensor(&get("v_head.bias")?)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_zero_and_round_trips() {
        let d = Device::Cpu;
        let head = ValueHead::zeros(4, &d).unwrap();
        let h = Tensor::ones((2, 3, 4), DType::F32, &d).unwrap();
        assert_eq!(head.forward(&h).unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.0; 3]; 2]);
        head.weight.set(&Tensor::new(&[[1f32, 2., 3., 4.]], &d).unwrap()).unwrap();
        head.bias.set(&Tensor::new(&[0.5f32], &d).unwrap()).unwrap();
        // 1+2+3+4 + 0.5 = 10.5 on an all-ones hidden state
        assert_eq!(head.forward(&h).unwrap().to_vec2::<f32>().unwrap(), vec![vec![10.5; 3]; 2]);
        let dir = tempfile::tempdir().unwrap();
        head.save(&dir.path().join("v.safetensors")).unwrap();
        let back = ValueHead::load(&dir.path().join("v.safetensors"), &d).unwrap();
        assert_eq!(back.forward(&h).unwrap().to_vec2::<f32>().unwrap(), vec![vec![10.5; 3]; 2]);
    }
}
