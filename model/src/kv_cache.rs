//! The KV cache for incremental decoding: preallocated per layer as `[batch, kv_heads, max_len,
//! head_dim]` keys and values, written in place.
//!
//! Preallocation rather than appending with `cat`: appending copies the whole cache at every step
//! (quadratic in the sequence length), while writing into a preallocated buffer copies only the new
//! positions, and the peak memory is known when the sampler starts. Attention reads a narrowed view
//! of the first `len` positions. The cache is for sampling only: `slice_set` writes outside the
//! autograd graph, so the training forward runs without one.

use candle_core::{DType, Device, Tensor};

use super::config::ModelConfig;
use super::error::{ModelError, Result};

/// The keys and values of one layer.
#[derive(Debug)]
pub struct LayerKv {
    k: Tensor,
    v: Tensor,
}

impl LayerKv {
    /// Writes `k, v: [b, kv_heads, t, d]` at `past..past + t` and returns the views of
    /// `0..past + t`.
    pub(crate) fn append(&self, k: &Tensor, v: &Tensor, past: usize) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        self.k.slice_set(&k.contiguous()?, 2, past)?;
        self.v.slice_set(&v.contiguous()?, 2, past)?;
        Ok((self.k.narrow(2, 0, past + t)?, self.v.narrow(2, 0, past + t)?))
    }
}

/// A whole model's KV cache.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
    batch: usize,
    max_len: usize,
    dtype: DType,
}

impl KvCache {
    /// Allocates a cache for `batch` rows of up to `max_len` positions (prompt plus new tokens), in
    /// the model's dtype on its device: `2 · layers · batch · kv_heads · max_len · head_dim` values.
    pub fn new(cfg: &ModelConfig, batch: usize, max_len: usize, device: &Device, dtype: DType) -> Result<Self> {
        let shape = (batch, cfg.num_key_value_heads, max_len, cfg.head_dim);
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Ok(LayerKv { k: Tensor::zeros(shape, dtype, device)?, v: Tensor::zeros(shape, dtype, device)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers, len: 0, batch, max_len, dtype })
    }

    /// Positions written so far (the `past` of the next forward pass).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows of the cache.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Capacity in positions.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets the cached positions (the buffers are kept for the next batch).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Checks that `t` more positions of `batch` rows fit.
    pub(crate) fn check(&self, batch: usize, t: usize, layers: usize, dtype: DType) -> Result<()> {
        if dtype != self.dtype {
            return Err(ModelError::CacheDtype { cache: self.dtype, model: dtype });
        }
        if batch != self.batch {
            return Err(ModelError::BadInput(format!("KV cache was allocated for {} rows, the input has {batch}", self.batch)));
        }
        if layers != self.layers.len() {
            return Err(ModelError::BadInput(format!("KV cache has {} layers, the model {layers}", self.layers.len())));
        }
        if self.len + t > self.max_len {
            return Err(ModelError::CacheFull { len: self.len, new: t, max_len: self.max_len });
        }
        Ok(())
    }

    pub(crate) fn layer(&self, i: usize) -> &LayerKv {
        &self.layers[i]
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
