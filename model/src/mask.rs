//! The attention mask: causal plus padding.
//!
//! Query `i` of a forward pass that follows `past` cached positions may attend key `j` of the
//! `past + t` keys when `j ≤ past + i` and `attention_mask[b, j] = 1`. Disallowed scores are
//! *replaced* by [`MASKED`] (`where_cond`, not an added bias, so no gradient reaches a masked
//! score, exactly as the forward pass ignores it), a large finite negative rather than −∞: the
//! query rows of left padding have no allowed key at all, and −∞ would turn their softmax (and
//! every gradient through it) into NaN; with a finite value they attend uniformly.

use candle_core::{DType, Tensor};

use super::error::{ModelError, Result};

/// The value of a masked attention score (f32).
pub const MASKED: f32 = -1.0e30;

/// Which scores are allowed: `[b, 1, t, past + t]`, u8 (1 = attend), for
/// `attention_mask: [b, past + t]` (any integer or float dtype, 1 = real token).
pub fn allowed_keys(attention_mask: &Tensor, past: usize, t: usize) -> Result<Tensor> {
    let (b, l) = attention_mask
        .dims2()
        .map_err(|_| ModelError::BadInput(format!("attention_mask must be [batch, past + t], got {:?}", attention_mask.dims())))?;
    if l != past + t {
        return Err(ModelError::BadInput(format!("attention_mask covers {l} positions but the cache holds {past} and the input adds {t}")));
    }
    let causal: Vec<f32> = (0..t).flat_map(|i| (0..l).map(move |j| if j <= past + i { 1.0 } else { 0.0 })).collect();
    let causal = Tensor::from_vec(causal, (1, 1, t, l), attention_mask.device())?;
    let keys = attention_mask.to_dtype(DType::F32)?.reshape((b, 1, 1, l))?;
    Ok(causal.broadcast_mul(&keys)?.gt(0.5)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn left_padding_and_causality() {
        let dev = Device::Cpu;
        // row 0: one pad then two tokens; row 1: three tokens
        let m = Tensor::new(&[[0u8, 1, 1], [1, 1, 1]], &dev).unwrap();
        let bias = allowed_keys(&m, 0, 3).unwrap().squeeze(1).unwrap().to_vec3::<u8>().unwrap();
        let ok = |v: u8| v == 1;
        assert!(!ok(bias[0][2][0]) && ok(bias[0][2][1]) && ok(bias[0][2][2]));
        assert!(ok(bias[1][1][0]) && ok(bias[1][1][1]) && !ok(bias[1][1][2]));
        // one new token after two cached ones sees all three keys of row 1
        let step = allowed_keys(&m, 2, 1).unwrap().flatten_all().unwrap().to_vec1::<u8>().unwrap();
        assert_eq!(step, vec![0, 1, 1, 1, 1, 1]);
        assert!(allowed_keys(&m, 1, 1).is_err());
    }
}
