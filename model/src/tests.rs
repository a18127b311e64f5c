//! Whole-model tests: parity with Hugging Face transformers + PEFT on the committed fixtures
//! (`tests/fixtures/parity`, written by `scripts/parity/parity.py generate`), the KV cache against
//! the full forward, gradients through LoRA only, and bad input.
//!
//! To re-bless the fixtures: `python scripts/parity/parity.py generate` (needs torch, transformers,
//! peft, safetensors), then rerun these tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};
use candle_nn::Optimizer;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::*;

fn fixture(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity").join(family)
}

struct Reference {
    ids: Tensor,
    mask: Tensor,
    pos: Tensor,
    base: Tensor,
    adapter: Tensor,
}

fn reference(family: &str) -> Reference {
    let t = candle_core::safetensors::load(fixture(family).join("reference.safetensors"), &Device::Cpu).unwrap();
    Reference {
        ids: t["input_ids"].to_dtype(DType::U32).unwrap(),
        mask: t["attention_mask"].to_dtype(DType::U8).unwrap(),
        pos: t["position_ids"].clone(),
        base: t["logits_base"].clone(),
        adapter: t["logits_adapter"].clone(),
    }
}

fn load(family: &str) -> CausalLm {
    CausalLm::load(&fixture(family).join("model"), &Device::Cpu, DType::F32).unwrap()
}

/// Max |a − b| over the real (mask = 1) positions of `[b, t, vocab]` logits.
fn max_diff_real(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(D::Minus1).unwrap();
    (a - b).unwrap().abs().unwrap().broadcast_mul(&m).unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

fn parity(family: &str, with_adapter: bool) {
    let r = reference(family);
    let mut m = load(family);
    if with_adapter {
        m.load_adapter(&fixture(family).join("adapter")).unwrap();
    }
    // Our own position ids (0 on padding) must give the same logits at the real positions.
    let mask_rows: Vec<Vec<u8>> = r.mask.to_vec2().unwrap();
    let pos = position_ids_for(&mask_rows, &Device::Cpu).unwrap();
    let logits = m.forward(&r.ids, &pos, &r.mask, None, LoraMode::On).unwrap();
    let want = if with_adapter { &r.adapter } else { &r.base };
    let diff = max_diff_real(&logits, want, &r.mask);
    eprintln!("{family} (adapter: {with_adapter}): max |medrl - transformers| = {diff:e}");
    assert!(diff < 1e-4, "{family} (adapter: {with_adapter}): max |medrl − transformers| = {diff:e}");
    // The fixture's own position ids (HF clamps padding to 0 too) agree.
    let logits2 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert!(max_diff_real(&logits2, want, &r.mask) < 1e-4);
}

#[test]
fn parity_qwen2_base() {
    parity("qwen2", false);
}

#[test]
fn parity_qwen2_adapter() {
    parity("qwen2", true);
}

#[test]
fn parity_llama_base() {
    parity("llama", false);
}

#[test]
fn parity_llama_adapter() {
    parity("llama", true);
}

#[test]
fn adapter_off_is_the_base_and_merging_makes_off_the_adapted_policy() {
    let r = reference("qwen2");
    let mut m = load("qwen2");
    m.load_adapter(&fixture("qwen2").join("adapter")).unwrap();
    let off = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Off).unwrap();
    assert!(max_diff_real(&off, &r.base, &r.mask) < 1e-4, "adapter off must be the base model");
    // The fixture's adapter changes the logits by far more than the tolerance.
    assert!(max_diff_real(&r.adapter, &r.base, &r.mask) > 0.1);

    let mut merged = load("qwen2");
    merged.merge_adapter(&fixture("qwen2").join("adapter")).unwrap();
    assert!(merged.lora_config().is_none() && merged.trainable_vars().is_empty());
    let off = merged.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Off).unwrap();
    let diff = max_diff_real(&off, &r.adapter, &r.mask);
    assert!(diff < 1e-4, "merged model differs from base+adapter by {diff:e}");
    // A second adapter can now be attached on top of the merged (SFT) base.
    merged.attach_lora(LoraConfig::default(), 1).unwrap();
    let fresh = merged.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert!(max_diff_real(&fresh, &r.adapter, &r.mask) < 1e-4, "fresh LoRA (B = 0) changes nothing");
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() {
    for family in ["qwen2", "llama"] {
        let r = reference(family);
        let mut m = load(family);
        m.load_adapter(&fixture(family).join("adapter")).unwrap();
        let full = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
        let (b, t) = r.ids.dims2().unwrap();
        let prefill = 3;
        let mut cache = m.new_cache(b, t + 2).unwrap();
        let first = m
            .forward_last(
                &r.ids.narrow(1, 0, prefill).unwrap(),
                &r.pos.narrow(1, 0, prefill).unwrap(),
                &r.mask.narrow(1, 0, prefill).unwrap(),
                Some(&mut cache),
                LoraMode::On,
            )
            .unwrap();
        // rows whose position is padding have meaningless logits in both; compare real ones
        let real_at = |s: usize| r.mask.i((.., s)).unwrap().to_dtype(DType::F32).unwrap().unsqueeze(1).unwrap();
        let want = full.i((.., prefill - 1)).unwrap();
        let d = (first - want).unwrap().abs().unwrap().broadcast_mul(&real_at(prefill - 1)).unwrap();
        let mut worst = d.max_all().unwrap().to_scalar::<f32>().unwrap();
        for s in prefill..t {
            let step = m
                .forward_last(
                    &r.ids.narrow(1, s, 1).unwrap(),
                    &r.pos.narrow(1, s, 1).unwrap(),
                    &r.mask.narrow(1, 0, s + 1).unwrap(),
                    Some(&mut cache),
                    LoraMode::On,
                )
                .unwrap();
            let want = full.i((.., s)).unwrap();
            let d = (step - want).unwrap().abs().unwrap().broadcast_mul(&real_at(s)).unwrap();
            worst = worst.max(d.max_all().unwrap().to_scalar::<f32>().unwrap());
        }
        assert_eq!(cache.len(), t);
        assert!(worst < 1e-4, "{family}: cached decoding differs from the full forward by {worst:e}");
        // the cache refuses more than it holds
        let err = m
            .forward_last(
                &Tensor::zeros((b, 3), DType::U32, &Device::Cpu).unwrap(),
                &Tensor::zeros((b, 3), DType::U32, &Device::Cpu).unwrap(),
                &Tensor::ones((b, t + 3), DType::U8, &Device::Cpu).unwrap(),
                Some(&mut cache),
                LoraMode::On,
            )
            .unwrap_err();
        assert!(matches!(err, ModelError::CacheFull { .. }), "{err}");
    }
}

#[test]
fn inference_mode_equals_on_and_records_no_graph() {
    let r = reference("qwen2");
    let mut m = load("qwen2");
    m.load_adapter(&fixture("qwen2").join("adapter")).unwrap();
    let on = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    let inf = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Inference).unwrap();
    assert_eq!(max_diff_real(&on, &inf, &r.mask), 0.0);
    assert!(on.track_op(), "the training forward is differentiable");
    assert!(!inf.track_op(), "the inference forward records no graph");
    let mut c = KvCache::new(m.config(), 3, 8, &Device::Cpu, DType::BF16).unwrap();
    let err = m.forward(&r.ids, &r.pos, &r.mask, Some(&mut c), LoraMode::Inference).unwrap_err();
    assert!(matches!(err, ModelError::CacheDtype { .. }), "{err}");
}

#[test]
fn bf16_weights_stay_close_to_f32_and_train_the_f32_adapter() {
    // The CUDA configuration (bf16 base, f32 LoRA), run on the CPU.
    let r = reference("llama");
    let mut m = CausalLm::load(&fixture("llama").join("model"), &Device::Cpu, DType::BF16).unwrap();
    m.load_adapter(&fixture("llama").join("adapter")).unwrap();
    assert_eq!(m.model.embed_tokens.dtype(), DType::BF16);
    let logits = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert_eq!(logits.dtype(), DType::F32);
    let diff = max_diff_real(&logits, &r.adapter, &r.mask);
    // bf16 keeps 8 bits of mantissa: ~0.4 % per rounding, logits up to ~3.5 in size
    assert!(diff < 0.15, "bf16 logits differ from the f32 reference by {diff}");
    let grads = loss(&m, &r).backward().unwrap();
    for (name, v) in m.named_trainable_vars() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.dtype(), DType::F32);
    }
    let mut cache = m.new_cache(3, 7).unwrap();
    m.forward_last(&r.ids, &r.pos, &r.mask, Some(&mut cache), LoraMode::Inference).unwrap();
}

#[test]
fn hidden_states_and_last_logits_agree_with_the_full_forward() {
    let r = reference("llama");
    let m = load("llama");
    let h = m.forward_hidden(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert_eq!(h.dims(), &[3, 7, 32]);
    let logits = m.lm_head(&h).unwrap();
    let last = m.forward_last(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    let d = (logits.i((.., 6)).unwrap() - last).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0);
}

/// Fills every LoRA variable with seeded values of scale 0.1 (a fresh B is zero, which would hide
/// bugs in the adapter's gradient).
fn randomize(vars: &[Var], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for v in vars {
        let n = v.as_tensor().elem_count();
        let vals: Vec<f32> = (0..n).map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2).collect();
        v.set(&Tensor::from_vec(vals, v.as_tensor().shape(), &Device::Cpu).unwrap()).unwrap();
    }
}

/// Mean negative log-probability of each real token predicted from a real position: the shape
/// of the SFT and PPO objectives.
fn loss(m: &CausalLm, r: &Reference) -> Tensor {
    let logits = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    let (b, t, _) = logits.dims3().unwrap();
    let logp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, t - 1).unwrap(), D::Minus1).unwrap();
    let targets = r.ids.narrow(1, 1, t - 1).unwrap().unsqueeze(D::Minus1).unwrap().contiguous().unwrap();
    let picked = logp.gather(&targets, D::Minus1).unwrap().squeeze(D::Minus1).unwrap();
    let m = r.mask.to_dtype(DType::F32).unwrap();
    let w = (m.narrow(1, 1, t - 1).unwrap() * m.narrow(1, 0, t - 1).unwrap()).unwrap();
    let _ = b;
    ((picked * &w).unwrap().sum_all().unwrap() / w.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64).unwrap().neg().unwrap()
}

#[test]
fn lora_backward_reaches_only_the_adapter_and_matches_finite_differences() {
    let r = reference("qwen2");
    let mut m = load("qwen2");
    let cfg = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
        use_rslora: false,
    };
    m.attach_lora(cfg, 7).unwrap();
    let vars = m.named_trainable_vars();
    assert_eq!(vars.len(), 2 * 5 * 2); // A and B × 5 modules × 2 layers
    randomize(&vars.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), 11);

    let l = loss(&m, &r);
    let grads = l.backward().unwrap();
    // No entry for any frozen tensor of the base model…
    let frozen = m.frozen_tensors();
    assert!(frozen.len() > 20);
    let frozen_ids: std::collections::HashSet<_> = frozen.iter().map(|t| t.id()).collect();
    for id in grads.get_ids() {
        assert!(!frozen_ids.contains(id), "the gradient store holds an entry for a frozen weight");
    }
    for t in &frozen {
        assert!(grads.get(t).is_none());
    }
    // …and one for every LoRA variable.
    for (name, v) in &vars {
        assert!(grads.get(v.as_tensor()).is_some(), "no gradient for {name}");
    }

    // Central finite differences on the largest-gradient element of a few A and B matrices.
    let eps = 1e-2f32;
    let mut report = Vec::new();
    for (name, v) in vars.iter() {
        let g = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (k, gk) = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|(k, g)| (k, *g)).unwrap();
        let orig = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let shape = v.as_tensor().shape().clone();
        let at = |delta: f32| {
            let mut p = orig.clone();
            p[k] += delta;
            v.set(&Tensor::from_vec(p, shape.clone(), &Device::Cpu).unwrap()).unwrap();
            loss(&m, &r).to_scalar::<f32>().unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        v.set(&Tensor::from_vec(orig.clone(), shape.clone(), &Device::Cpu).unwrap()).unwrap();
        let rel = (fd - gk).abs() / gk.abs().max(1e-3);
        report.push((rel, format!("{name}[{k}]: autograd {gk:e} vs finite differences {fd:e} (rel {rel:e})")));
    }
    eprintln!("{}", report.iter().map(|r| r.1.clone()).collect::<Vec<_>>().join("\n"));
    for (rel, line) in &report {
        assert!(*rel < 5e-3, "{line}");
    }

    // One optimizer step changes the adapter and nothing else.
    let before: Vec<Vec<f32>> = frozen.iter().map(|t| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
    let a0 = vars[0].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut sgd = candle_nn::SGD::new(m.trainable_vars(), 0.1).unwrap();
    let l0 = loss(&m, &r).to_scalar::<f32>().unwrap();
    sgd.backward_step(&loss(&m, &r)).unwrap();
    let l1 = loss(&m, &r).to_scalar::<f32>().unwrap();
    assert!(l1 < l0, "a gradient step must lower the loss ({l0} → {l1})");
    assert_ne!(a0, vars[0].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    for (t, b) in frozen.iter().zip(&before) {
        assert_eq!(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b);
    }
}

#[test]
fn training_dropout_is_seeded_and_off_outside_training() {
    let r = reference("llama");
    let mut m = load("llama");
    m.attach_lora(LoraConfig { dropout: 0.5, ..LoraConfig::default() }, 3).unwrap();
    randomize(&m.trainable_vars(), 5);
    let on1 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    let on2 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert_eq!(max_diff_real(&on1, &on2, &r.mask), 0.0);
    let t1 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Train { seed: 9 }).unwrap();
    let t2 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Train { seed: 9 }).unwrap();
    let t3 = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::Train { seed: 10 }).unwrap();
    assert_eq!(max_diff_real(&t1, &t2, &r.mask), 0.0);
    assert!(max_diff_real(&t1, &t3, &r.mask) > 1e-3);
    assert!(max_diff_real(&t1, &on1, &r.mask) > 1e-3);
}

#[test]
fn saved_adapter_reloads_with_identical_logits() {
    let r = reference("llama");
    let mut m = load("llama");
    let cfg = LoraConfig { r: 3, alpha: 5.0, use_rslora: true, target_modules: vec!["k_proj".into(), "gate_proj".into()], ..LoraConfig::default() };
    m.attach_lora(cfg.clone(), 2).unwrap();
    randomize(&m.trainable_vars(), 8);
    let want = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.save_adapter(dir.path()).unwrap();
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(conf["peft_type"], "LORA");
    assert_eq!(conf["r"], 3);
    assert_eq!(conf["lora_alpha"], 5);
    let keys: Vec<String> = candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu).unwrap().into_keys().collect();
    assert!(keys.contains(&"base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight".to_string()), "{keys:?}");
    assert_eq!(keys.len(), 2 * 2 * 2);

    let mut fresh = load("llama");
    fresh.load_adapter(dir.path()).unwrap();
    assert_eq!(fresh.lora_config(), Some(&cfg));
    let got = fresh.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert_eq!(max_diff_real(&got, &want, &r.mask), 0.0);
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let r = reference("qwen2");
    let src = fixture("qwen2").join("model");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in all.into_iter().enumerate() {
        let shard = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        map.insert(k.clone(), shard.into());
        if i % 2 == 0 {
            a.insert(k, v)
        } else {
            b.insert(k, v)
        };
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let m = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let got = m.forward(&r.ids, &r.pos, &r.mask, None, LoraMode::On).unwrap();
    assert!(max_diff_real(&got, &r.base, &r.mask) < 1e-4);

    // A shard that the index names but the folder lacks is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let msg = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
}

/// A copy of a fixture folder to break.
fn copy_dir(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

/// Issue 14 item 6: a checkpoint or adapter cut short (a download or copy that stopped) or
/// overwritten with other bytes is named, with what to do, not left to candle's bare message.
#[test]
fn truncated_or_corrupt_safetensors_are_named_with_the_fix() {
    let dir = copy_dir(&fixture("qwen2").join("model"));
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    for broken in [&bytes[..bytes.len() / 2], &bytes[..5], b"<html>404 Not Found</html>".as_slice()] {
        std::fs::write(&weights, broken).unwrap();
        let err = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err();
        assert!(matches!(err, ModelError::CorruptSafetensors { ref path, .. } if *path == weights), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("is not a readable safetensors file") && msg.contains("truncated or corrupt") && msg.contains("medrl model init"),
            "{msg}"
        );
    }

    let mut m = load("llama");
    m.attach_lora(LoraConfig { r: 2, ..LoraConfig::default() }, 1).unwrap();
    let adapter = tempfile::tempdir().unwrap();
    m.save_adapter(adapter.path()).unwrap();
    let file = adapter.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 7]).unwrap();
    let msg = load("llama").load_adapter(adapter.path()).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{} is not a readable safetensors file", file.display())) && msg.contains("copy the adapter folder again"),
        "{msg}"
    );
}

#[test]
fn missing_model_files_are_named() {
    let dir = copy_dir(&fixture("qwen2").join("model"));
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let msg = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(msg.contains("`model.safetensors`"), "{msg}");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let msg = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(msg.contains("`config.json`"), "{msg}");
}

#[test]
fn unsupported_architecture_on_load_says_which_are_supported() {
    let dir = copy_dir(&fixture("llama").join("model"));
    let p = dir.path().join("config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("LlamaForCausalLM", "GPT2LMHeadModel");
    std::fs::write(&p, text).unwrap();
    let msg = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(msg.contains("GPT2LMHeadModel") && msg.contains("Qwen2ForCausalLM, LlamaForCausalLM"), "{msg}");
}

#[test]
fn checkpoint_of_another_shape_names_the_tensor() {
    // Llama's config with Qwen2's weights: q_proj is [32, 32], the config implies [64, 32].
    let dir = copy_dir(&fixture("qwen2").join("model"));
    std::fs::copy(fixture("llama").join("model/config.json"), dir.path().join("config.json")).unwrap();
    let msg = CausalLm::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(msg.contains("model.layers.0.self_attn.q_proj.weight") && msg.contains("[64, 32]"), "{msg}");
}

#[test]
fn mismatched_adapters_say_what_does_not_fit() {
    // Qwen2's adapter on the Llama model: v_proj's lora_B is [16, 4], Llama's v_proj needs [32, 4].
    let mut m = load("llama");
    let msg = m.load_adapter(&fixture("qwen2").join("adapter")).unwrap_err().to_string();
    assert!(msg.contains("lora_B.weight") && msg.contains("[32, 4]"), "{msg}");
    assert!(m.lora_config().is_none(), "a refused adapter leaves nothing attached");

    // A target module the model does not have.
    let dir = copy_dir(&fixture("qwen2").join("adapter"));
    let p = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"up_proj\"", "\"c_attn\"");
    std::fs::write(&p, text).unwrap();
    let mut q = load("qwen2");
    let msg = q.load_adapter(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("`c_attn`") && msg.contains("targetable"), "{msg}");

    // Tensors for a module the config does not target (or a layer the model does not have).
    let dir = copy_dir(&fixture("llama").join("adapter"));
    let p = dir.path().join("adapter_config.json");
    let text =
        std::fs::read_to_string(&p).unwrap().replace("\"down_proj\",", "").replace(",\n    \"down_proj\"", "").replace("\"down_proj\"", "\"q_proj\"");
    std::fs::write(&p, text).unwrap();
    let mut l = load("llama");
    let msg = l.load_adapter(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("down_proj") && msg.contains("matches no targeted projection"), "{msg}");

    // A missing weights file is named; DoRA is refused by name.
    let dir = copy_dir(&fixture("llama").join("adapter"));
    std::fs::remove_file(dir.path().join("adapter_model.safetensors")).unwrap();
    let msg = load("llama").load_adapter(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("`adapter_model.safetensors`"), "{msg}");
    let p = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"use_dora\": false", "\"use_dora\": true");
    std::fs::write(&p, text).unwrap();
    let msg = load("llama").load_adapter(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("use_dora"), "{msg}");
}

#[test]
fn bad_forward_inputs_are_refused() {
    let m = load("qwen2");
    let dev = Device::Cpu;
    let ids = Tensor::zeros((2, 4), DType::U32, &dev).unwrap();
    let short_mask = Tensor::ones((2, 3), DType::U8, &dev).unwrap();
    let err = m.forward(&ids, &ids, &short_mask, None, LoraMode::On).unwrap_err();
    assert!(err.to_string().contains("attention_mask covers 3"), "{err}");
    let pos = Tensor::zeros((2, 5), DType::U32, &dev).unwrap();
    let mask = Tensor::ones((2, 4), DType::U8, &dev).unwrap();
    assert!(m.forward(&ids, &pos, &mask, None, LoraMode::On).is_err());
    let mut cache = m.new_cache(3, 8).unwrap();
    let err = m.forward(&ids, &ids, &mask, Some(&mut cache), LoraMode::On).unwrap_err();
    assert!(err.to_string().contains("3 rows"), "{err}");
}
