//! The decoder's configuration, read from a Hugging Face `config.json` of the Qwen2
//! (`Qwen2ForCausalLM`) or Llama (`LlamaForCausalLM`) family.
//!
//! `config.json` is an external format with dozens of fields we do not use, so unknown fields are
//! ignored here (unlike our own config structs); fields that would change the computation and that
//! we do not implement (another activation, sliding windows, an unknown rope scaling) are refused.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{ModelError, Result};

/// The `architectures` values this decoder implements.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["Qwen2ForCausalLM", "LlamaForCausalLM"];

/// Which family a checkpoint belongs to; decides the bias layout of the projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// Qwen2 / Qwen2.5: bias on q, k and v projections, none elsewhere.
    Qwen2,
    /// Llama 2 / 3: `attention_bias` on q, k, v, o; `mlp_bias` on gate, up, down.
    Llama,
}

/// How rotary frequencies are scaled for long context (`rope_scaling` in config.json).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// No scaling (`rope_scaling` absent, null or `"default"`).
    None,
    /// Positions divided by `factor` (`"linear"`).
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling (`"llama3"`).
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
}

/// The resolved decoder configuration.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The architecture family.
    pub family: Family,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's gate and up projections.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Width of one head: `head_dim` from the config, else `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Rotary scaling.
    pub rope_scaling: RopeScaling,
    /// Longest position the model was trained for.
    pub max_position_embeddings: usize,
    /// Vocabulary size (rows of the embedding and the LM head).
    pub vocab_size: usize,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the o projection.
    pub o_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// BOS token id, if the config names one.
    pub bos_token_id: Option<u32>,
    /// EOS token ids (the config holds one id or a list).
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling together here.
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    /// transformers ≥ 5: the attention kind of every layer.
    #[serde(default)]
    layer_types: Vec<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<EosIds>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

/// Hugging Face's default rotary base.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

fn default_max_positions() -> usize {
    4096
}
fn default_act() -> String {
    "silu".into()
}

impl ModelConfig {
    /// Reads `config.json` from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                kind: "model",
                dir: dir.to_path_buf(),
                file: "config.json".into(),
                hint: "a model folder holds a Hugging Face config.json next to its safetensors",
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|source| ModelError::Json { path: path.to_path_buf(), what: "Hugging Face config.json", source })?;
        let family = match raw.architectures.first().map(String::as_str) {
            Some("Qwen2ForCausalLM") if raw.architectures.len() == 1 => Family::Qwen2,
            Some("LlamaForCausalLM") if raw.architectures.len() == 1 => Family::Llama,
            _ => {
                return Err(ModelError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    found: raw.architectures,
                    supported: SUPPORTED_ARCHITECTURES,
                });
            }
        };
        let p = path.to_path_buf();
        if raw.hidden_act != "silu" {
            return Err(ModelError::UnsupportedSetting {
                path: p,
                field: "hidden_act",
                value: raw.hidden_act,
                hint: "only the SwiGLU MLP with `silu` is implemented",
            });
        }
        if raw.use_sliding_window {
            return Err(ModelError::UnsupportedSetting {
                path: p,
                field: "use_sliding_window",
                value: "true".into(),
                hint: "sliding-window attention is not implemented; set it to false for contexts within max_window_layers",
            });
        }
        if let Some(kind) = raw.layer_types.iter().find(|k| k.as_str() != "full_attention") {
            return Err(ModelError::UnsupportedSetting {
                path: p,
                field: "layer_types",
                value: kind.clone(),
                hint: "only full attention is implemented",
            });
        }
        let rope_params = raw.rope_parameters.as_ref().filter(|v| !v.is_null());
        let rope_theta = rope_params.and_then(|v| v.get("rope_theta")).and_then(|v| v.as_f64()).or(raw.rope_theta).unwrap_or(DEFAULT_ROPE_THETA);
        let rope_scaling = parse_rope_scaling(rope_params.or(raw.rope_scaling.as_ref()), &p)?;
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let invalid = |reason: String| ModelError::InvalidConfig { path: p.clone(), reason };
        if raw.num_attention_heads == 0 || num_key_value_heads == 0 {
            return Err(invalid("num_attention_heads and num_key_value_heads must be positive".into()));
        }
        if !raw.num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(invalid(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({num_key_value_heads})",
                raw.num_attention_heads
            )));
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => {
                if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
                    return Err(invalid(format!(
                        "hidden_size ({}) is not a multiple of num_attention_heads ({}) and no head_dim is given",
                        raw.hidden_size, raw.num_attention_heads
                    )));
                }
                raw.hidden_size / raw.num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(invalid(format!("head_dim ({head_dim}) must be even for rotary embeddings")));
        }
        let (qkv_bias, o_bias, mlp_bias) = match family {
            Family::Qwen2 => (true, false, false),
            Family::Llama => (raw.attention_bias, raw.attention_bias, raw.mlp_bias),
        };
        Ok(ModelConfig {
            family,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            vocab_size: raw.vocab_size,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => vec![],
                Some(EosIds::One(id)) => vec![id],
                Some(EosIds::Many(ids)) => ids,
            },
        })
    }

    /// Query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

fn parse_rope_scaling(v: Option<&serde_json::Value>, path: &Path) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |key: &'static str| -> Result<f64> {
        v.get(key).and_then(|x| x.as_f64()).ok_or_else(|| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!("rope_scaling of type {kind:?} needs a number `{key}`"),
        })
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(ModelError::UnsupportedSetting {
            path: path.to_path_buf(),
            field: "rope_scaling",
            value: other.to_string(),
            hint: "supported rope scalings: default, linear, llama3",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN: &str = r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":32,"intermediate_size":64,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-6,
      "rope_theta":1000000.0,"max_position_embeddings":128,"vocab_size":128,"tie_word_embeddings":true,
      "hidden_act":"silu","use_sliding_window":false,"sliding_window":128,"eos_token_id":2,"torch_dtype":"float32"}"#;

    #[test]
    fn qwen2_config_resolves_head_dim_and_biases() {
        let c = ModelConfig::from_json(QWEN, Path::new("config.json")).unwrap();
        assert_eq!(c.family, Family::Qwen2);
        assert_eq!(c.head_dim, 8); // 32 / 4
        assert_eq!(c.kv_groups(), 2);
        assert!(c.qkv_bias && !c.o_bias && !c.mlp_bias);
        assert_eq!(c.eos_token_ids, vec![2]);
    }

    #[test]
    fn llama_config_reads_explicit_head_dim_and_rope_scaling() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":32,"intermediate_size":64,
          "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,
          "rms_norm_eps":1e-5,"vocab_size":10,"attention_bias":true,"eos_token_id":[1,2],
          "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
          "original_max_position_embeddings":8192}}"#;
        let c = ModelConfig::from_json(text, Path::new("config.json")).unwrap();
        assert_eq!(c.head_dim, 16);
        assert!(c.qkv_bias && c.o_bias && !c.mlp_bias);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { .. }));
        assert_eq!(c.rope_theta, 10_000.0);
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        let text = QWEN.replace(r#""rope_theta":1000000.0"#, r#""rope_parameters":{"rope_type":"default","rope_theta":500000.0}"#);
        let c = ModelConfig::from_json(&text, Path::new("c")).unwrap();
        assert_eq!(c.rope_theta, 500_000.0);
        assert_eq!(c.rope_scaling, RopeScaling::None);
    }

    #[test]
    fn unsupported_architecture_lists_the_supported_ones() {
        let text = QWEN.replace("Qwen2ForCausalLM", "MistralForCausalLM");
        let err = ModelConfig::from_json(&text, Path::new("m/config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("MistralForCausalLM"), "{msg}");
        assert!(msg.contains("Qwen2ForCausalLM, LlamaForCausalLM"), "{msg}");
    }

    #[test]
    fn unknown_rope_scaling_and_activation_are_refused() {
        let text = QWEN.replace(r#""hidden_act":"silu""#, r#""hidden_act":"gelu""#);
        let msg = ModelConfig::from_json(&text, Path::new("c")).unwrap_err().to_string();
        assert!(msg.contains("hidden_act") && msg.contains("gelu"), "{msg}");
        let text = QWEN.replace(r#""rope_theta""#, r#""rope_scaling":{"type":"yarn","factor":4.0},"rope_theta""#);
        let msg = ModelConfig::from_json(&text, Path::new("c")).unwrap_err().to_string();
        assert!(msg.contains("yarn") && msg.contains("llama3"), "{msg}");
    }
}
