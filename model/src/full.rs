//! Full fine-tuning: every weight of the model as a trainable f32 variable.
//!
//! LoRA keeps the base frozen behind [`super::frozen`]'s ops, which never hand the autograd graph
//! a weight. For full fine-tuning each frozen tensor gets a trainable twin instead: a [`Var`]
//! initialised from it, which the layer uses in place of the frozen op (plain candle matmul and
//! multiply, so backprop reaches it). The frozen tensors stay, untouched: the twin starts equal to
//! them, so an unfrozen model computes exactly what the frozen one did until the first step.
//! [`CausalLm::save_full`] writes the twins as a new Hugging Face model folder. The twins
//! themselves ([`super::dense`]) sit below the layers that use them, so this file, which needs
//! the whole model, is no longer in an import loop with them.

use std::path::Path;

use candle_core::{Tensor, Var};

use super::causal_lm::CausalLm;
use super::dense::{DenseLinear, trainable_copy};
use super::error::{ModelError, Result};

impl CausalLm {
    /// Makes every weight trainable (embedding, projections with their biases, norms, LM head).
    /// Refused with an adapter attached: full fine-tuning and LoRA are alternatives.
    pub fn unfreeze_all(&mut self) -> Result<()> {
        if self.lora_config().is_some() {
            return Err(ModelError::FullFineTune("full fine-tuning needs a model without a LoRA adapter attached".into()));
        }
        if self.is_unfrozen() {
            return Ok(());
        }
        for (_, lin) in self.projections_mut() {
            lin.full = Some(DenseLinear::from_frozen(&lin.base)?);
        }
        for layer in &mut self.model.layers {
            layer.input_layernorm.unfreeze()?;
            layer.post_attention_layernorm.unfreeze()?;
        }
        self.model.norm.unfreeze()?;
        let embed = trainable_copy(&self.model.embed_tokens)?;
        // A tied head is the embedding itself: one variable, trained by both uses.
        self.lm_head_full =
            Some(if self.head_is_tied() { DenseLinear { weight: embed.clone(), bias: None } } else { DenseLinear::from_frozen(&self.lm_head)? });
        self.model.embed_full = Some(embed);
        Ok(())
    }

    /// Whether [`Self::unfreeze_all`] has run.
    pub fn is_unfrozen(&self) -> bool {
        self.model.embed_full.is_some()
    }

    /// The trainable weights of an unfrozen model with their checkpoint names
    /// (`model.layers.0.self_attn.q_proj.weight`), each once; empty when frozen.
    pub fn named_full_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        let Some(embed) = &self.model.embed_full else { return out };
        out.push(("model.embed_tokens.weight".to_string(), embed.clone()));
        for (i, layer) in self.model.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                if let Some(full) = &lin.full {
                    out.push((format!("model.layers.{i}.{name}.weight"), full.weight.clone()));
                    if let Some(b) = &full.bias {
                        out.push((format!("model.layers.{i}.{name}.bias"), b.clone()));
                    }
                }
            }
            for (name, norm) in [("input_layernorm", &layer.input_layernorm), ("post_attention_layernorm", &layer.post_attention_layernorm)] {
                if let Some(v) = norm.full() {
                    out.push((format!("model.layers.{i}.{name}.weight"), v.clone()));
                }
            }
        }
        if let Some(v) = self.model.norm.full() {
            out.push(("model.norm.weight".to_string(), v.clone()));
        }
        if let Some(head) = &self.lm_head_full
            && !self.head_is_tied()
        {
            out.push(("lm_head.weight".to_string(), head.weight.clone()));
        }
        out
    }

    /// Writes the trained weights as a Hugging Face model folder: `model.safetensors` (in the
    /// base checkpoint's dtype, with `{"format": "pt"}` metadata so transformers loads it) and
    /// every other file of the base folder (config, tokenizer, chat template) copied unchanged.
    pub fn save_full(&self, dir: &Path) -> Result<()> {
        let vars = self.named_full_vars();
        if vars.is_empty() {
            return Err(ModelError::FullFineTune("save_full needs an unfrozen model (unfreeze_all)".into()));
        }
        // Saved in the base checkpoint's dtype, beside the base folder's other files.
        let tensors: Vec<(String, Tensor)> = vars.into_iter().map(|(name, var)| (name, var.as_tensor().clone())).collect();
        super::export::write_model_folder(self.dir(), dir, tensors, self.dtype())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testutil::tiny_model_dir;
    use crate::{LoraConfig, LoraMode, position_ids_for};
    use candle_core::DType;
    use candle_core::Device;

    fn logits(m: &CausalLm) -> Tensor {
        let dev = Device::Cpu;
        let rows = vec![vec![5u32, 17, 230, 9, 41, 7], vec![0, 0, 88, 300, 12, 3]];
        let mask_rows = vec![vec![1u8; 6], vec![0, 0, 1, 1, 1, 1]];
        let ids = Tensor::new(rows, &dev).unwrap();
        let mask = Tensor::new(mask_rows.clone(), &dev).unwrap();
        let pos = position_ids_for(&mask_rows, &dev).unwrap();
        m.forward(&ids, &pos, &mask, None, LoraMode::On).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    fn checkpoint_names(dir: &Path) -> Vec<String> {
        let bytes = std::fs::read(dir.join(crate::init::WEIGHTS_FILE)).unwrap();
        let mut names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(str::to_string).collect();
        names.sort();
        names
    }

    #[test]
    fn an_unfrozen_model_computes_what_the_frozen_one_did_and_every_weight_gets_a_gradient() {
        let frozen = CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap();
        let mut m = frozen.clone();
        m.unfreeze_all().unwrap();
        let (before, after) = (logits(&frozen), logits(&m));
        assert!(max_diff(&before, &after) < 1e-5, "{}", max_diff(&before, &after));
        // One trainable variable per checkpoint tensor, under the checkpoint's names.
        let vars = m.named_full_vars();
        let mut names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        assert_eq!(names, checkpoint_names(tiny_model_dir()));
        let grads = after.sqr().unwrap().mean_all().unwrap().backward().unwrap();
        for (name, var) in &vars {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "zero gradient for {name}");
        }
        // The frozen originals stay out of the graph.
        for t in m.frozen_tensors() {
            assert!(grads.get(&t).is_none());
        }
    }

    #[test]
    fn a_saved_model_reloads_with_the_trained_weights_and_the_base_files() {
        let base = CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap();
        let mut m = base.clone();
        m.unfreeze_all().unwrap();
        for (name, var) in m.named_full_vars() {
            if name.ends_with("q_proj.weight") || name == "lm_head.weight" {
                var.set(&(var.as_tensor() * 1.5).unwrap()).unwrap();
            }
        }
        let trained = logits(&m);
        assert!(max_diff(&trained, &logits(&base)) > 1e-3, "the edit changes the model");
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("model");
        m.save_full(&dir).unwrap();
        let reloaded = CausalLm::load(&dir, &Device::Cpu, DType::F32).unwrap();
        assert!(max_diff(&trained, &logits(&reloaded)) < 1e-6);
        assert_eq!(checkpoint_names(&dir), checkpoint_names(tiny_model_dir()));
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(tiny_model_dir().join(f)).unwrap(), "{f}");
        }
    }

    #[test]
    fn a_tied_head_is_one_variable_with_the_embedding() {
        // The tiny model with its LM head dropped and tie_word_embeddings set.
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let cfg_path = dir.path().join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["tie_word_embeddings"] = serde_json::json!(true);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let st_path = dir.path().join(crate::init::WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&st_path, &Device::Cpu).unwrap();
        let kept: Vec<(String, Tensor)> = tensors.into_iter().filter(|(n, _)| n != "lm_head.weight").collect();
        let bytes = safetensors::tensor::serialize(kept.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap();
        std::fs::write(&st_path, bytes).unwrap();

        let mut m = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
        m.unfreeze_all().unwrap();
        let vars = m.named_full_vars();
        assert!(!vars.iter().any(|(n, _)| n == "lm_head.weight"));
        let (_, embed) = vars.iter().find(|(n, _)| n == "model.embed_tokens.weight").unwrap();
        let head = &m.lm_head_full.as_ref().unwrap().weight;
        assert_eq!(head.as_tensor().id(), embed.as_tensor().id(), "the head is the embedding's variable");
        m.save_full(&dir.path().join("saved")).unwrap();
        assert!(!checkpoint_names(&dir.path().join("saved")).contains(&"lm_head.weight".to_string()));
    }

    #[test]
    fn full_fine_tuning_and_lora_are_alternatives() {
        let mut m = CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap();
        m.attach_lora(LoraConfig::default(), 0).unwrap();
        let err = m.unfreeze_all().unwrap_err().to_string();
        assert!(err.contains("without a LoRA adapter"), "{err}");
        let frozen = CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap();
        assert!(frozen.save_full(&tempfile::tempdir().unwrap().path().join("x")).unwrap_err().to_string().contains("unfreeze_all"));
    }
}
