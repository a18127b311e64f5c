#!/usr/bin/env python3
"""Parity of medrl's decoder and PEFT adapter io with Hugging Face transformers and PEFT.

  parity.py generate [OUT]      tiny random Qwen2 and Llama models, a PEFT LoRA adapter for each,
                                a fixed left-padded batch and the reference logits with and without
                                the adapter (default OUT: tests/fixtures/parity). The Rust test
                                `model_parity` compares medrl's logits with these.
  parity.py check-merged MERGED BASE [ADAPTER ...]
                                loads medrl's merged export (`medrl model export --merge`) with
                                transformers alone, and BASE with each PEFT ADAPTER merged in turn
                                (SFT first, RL last), and compares their logits on a fixed batch.
  parity.py check-medrl DIR     loads adapters that medrl saved (`cargo run -p medrl --example
                                peft_export -- DIR`) into PEFT and compares PEFT's logits with the
                                logits medrl computed with the same adapter.

Needs: pip install torch transformers peft safetensors (CPU is fine). Everything is seeded, so a
rerun writes the same fixtures.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

FAMILIES = ("qwen2", "llama")
PAD = 0
# Three rows, left padded: 0, 2 and 4 padding positions.
ROWS = [
    [5, 17, 99, 3, 42, 8, 120],
    [61, 7, 7, 90, 11],
    [33, 2, 127],
]


def model_config(family):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=PAD,
    )
    if family == "qwen2":
        # Qwen2.5-0.5B style: tied embeddings, q/k/v bias, rope_theta 1e6.
        return Qwen2Config(rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True,
                           use_sliding_window=False, **common)
    # Llama 3.1 style rope scaling, an explicit head_dim different from hidden/heads, untied head.
    return LlamaConfig(rms_norm_eps=1e-5, head_dim=16, tie_word_embeddings=False,
                       rope_theta=500_000.0,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                       **common)


def lora_config(family):
    from peft import LoraConfig

    if family == "qwen2":
        return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                          "gate_proj", "up_proj", "down_proj"])
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "v_proj", "down_proj"])


def batch():
    t = max(len(r) for r in ROWS)
    ids = [[PAD] * (t - len(r)) + r for r in ROWS]
    mask = [[0] * (t - len(r)) + [1] * len(r) for r in ROWS]
    ids = torch.tensor(ids, dtype=torch.long)
    mask = torch.tensor(mask, dtype=torch.long)
    # Each row counts from 0 at its first real token (Hugging Face's generate does the same).
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()


def load_base(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                attn_implementation="eager").eval()


def generate(out):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    ids, mask, pos = batch()
    for i, family in enumerate(FAMILIES):
        torch.manual_seed(1234 + i)
        model = AutoModelForCausalLM.from_config(model_config(family), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
        with torch.no_grad():
            # Large, varied weights (not HF's 0.02 init, not unit norms, not zero biases) so that
            # every part of the computation moves the logits well above the 1e-4 tolerance.
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.15 * torch.randn_like(p))
        fam = os.path.join(out, family)
        model.save_pretrained(os.path.join(fam, "model"), safe_serialization=True)
        base = logits(model, ids, mask, pos)

        peft_model = get_peft_model(model, lora_config(family))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_A" in name or "lora_B" in name:
                    p.copy_(0.2 * torch.randn_like(p))  # B ≠ 0 so the adapter matters
        peft_model.eval()
        peft_model.save_pretrained(os.path.join(fam, "adapter"))
        os.remove(os.path.join(fam, "adapter", "README.md"))  # PEFT's empty model card
        adapted = logits(peft_model, ids, mask, pos)

        save_file({
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "position_ids": pos.contiguous(),
            "logits_base": base.contiguous(),
            "logits_adapter": adapted.contiguous(),
        }, os.path.join(fam, "reference.safetensors"))
        real = mask.bool()
        print(f"{family}: wrote {fam}; |logits| max {base[real].abs().max():.3f}, "
              f"adapter changes them by up to {(adapted - base)[real].abs().max():.3f}")


def check_medrl(root):
    from peft import PeftModel

    worst = 0.0
    for family in FAMILIES:
        d = os.path.join(root, family)
        if not os.path.isdir(d):
            continue
        with open(os.path.join(d, "export.json")) as f:
            meta = json.load(f)
        ref = load_file(os.path.join(d, "medrl_logits.safetensors"))
        ids, mask, pos = ref["input_ids"].long(), ref["attention_mask"].long(), ref["position_ids"].long()
        base = load_base(meta["base"])
        model = PeftModel.from_pretrained(base, os.path.join(d, "adapter")).eval()
        ours = ref["logits"]
        theirs = logits(model, ids, mask, pos)
        real = mask.bool()
        diff = (ours - theirs)[real].abs().max().item()
        moved = (theirs - logits(load_base(meta["base"]), ids, mask, pos))[real].abs().max().item()
        worst = max(worst, diff)
        print(f"{family}: PEFT loaded medrl's adapter ({d}/adapter, r={model.peft_config['default'].r}, "
              f"targets {sorted(model.peft_config['default'].target_modules)}); "
              f"adapter moves logits by up to {moved:.4f}; max |medrl - PEFT| = {diff:.3e}")
    ok = worst < 1e-4
    print("PASS" if ok else "FAIL", f"(tolerance 1e-4, worst {worst:.3e})")
    return 0 if ok else 1


def check_merged(merged, base, adapters):
    from peft import PeftModel

    ids, mask, pos = batch()
    model = load_base(base)
    for a in adapters:
        model = PeftModel.from_pretrained(model, a).merge_and_unload()
    want = logits(model.eval(), ids, mask, pos)
    got = logits(load_base(merged), ids, mask, pos)
    real = mask.bool()
    diff = (got - want)[real].abs().max().item()
    ok = diff < 1e-5
    print(f"transformers loaded {merged}; max |merged - base+PEFT adapters| = {diff:.3e}:",
          "PASS" if ok else "FAIL", "(tolerance 1e-5)")
    return 0 if ok else 1


def main(argv):
    if len(argv) >= 2 and argv[1] == "generate":
        generate(argv[2] if len(argv) > 2 else "tests/fixtures/parity")
        return 0
    if len(argv) >= 4 and argv[1] == "check-merged":
        return check_merged(argv[2], argv[3], argv[4:])
    if len(argv) == 3 and argv[1] == "check-medrl":
        return check_medrl(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
