//! Writes LoRA adapters with medrl, and medrl's logits with them, for Python PEFT to check:
//!
//! ```text
//! cargo run -p medrl --example peft_export -- /tmp/medrl-peft
//! python scripts/parity/parity.py check-medrl /tmp/medrl-peft
//! ```
//!
//! For each tiny fixture model in `tests/fixtures/parity` it attaches a fresh adapter, fills its
//! A and B with seeded non-zero values (a fresh B is zero and would prove nothing), saves it in
//! PEFT format, and saves the logits medrl computes with it on the fixture's left-padded batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use medrl::model::{CausalLm, LoraConfig, LoraMode};

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).context("usage: peft_export OUT_DIR")?);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity").canonicalize()?;
    let configs = [
        (
            "qwen2",
            LoraConfig {
                r: 8,
                alpha: 16.0,
                dropout: 0.05,
                target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
                use_rslora: false,
            },
        ),
        (
            "llama",
            LoraConfig {
                r: 2,
                alpha: 6.0,
                dropout: 0.0,
                target_modules: ["k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
                use_rslora: true,
            },
        ),
    ];
    let dev = Device::Cpu;
    for (i, (family, cfg)) in configs.into_iter().enumerate() {
        let base = fixtures.join(family).join("model");
        let mut model = CausalLm::load(&base, &dev, DType::F32)?;
        model.attach_lora(cfg, 100 + i as u64)?;
        // B gets the same kind of values as A (seeded, uniform), so the adapter changes the logits.
        for (k, var) in model.trainable_vars().iter().enumerate() {
            let n = var.as_tensor().elem_count();
            let vals: Vec<f32> = (0..n).map(|j| (((j * 7919 + k * 104729 + i * 31) % 1000) as f32 / 1000.0 - 0.5) * 0.4).collect();
            var.set(&Tensor::from_vec(vals, var.as_tensor().shape(), &dev)?)?;
        }
        let dir = out.join(family);
        model.save_adapter(&dir.join("adapter"))?;

        let reference = candle_core::safetensors::load(fixtures.join(family).join("reference.safetensors"), &dev)?;
        let ids = &reference["input_ids"];
        let mask = &reference["attention_mask"];
        let pos = &reference["position_ids"];
        let logits = model.forward(&ids.to_dtype(DType::U32)?, pos, &mask.to_dtype(DType::U8)?, None, LoraMode::On)?;
        let tensors: HashMap<&str, Tensor> =
            [("input_ids", ids.clone()), ("attention_mask", mask.clone()), ("position_ids", pos.clone()), ("logits", logits)].into_iter().collect();
        candle_core::safetensors::save(&tensors, dir.join("medrl_logits.safetensors"))?;
        let meta = serde_json::json!({ "base": base.display().to_string() });
        std::fs::write(dir.join("export.json"), meta.to_string())?;
        println!("{family}: wrote {}", dir.display());
    }
    Ok(())
}
