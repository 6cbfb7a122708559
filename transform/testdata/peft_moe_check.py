#!/usr/bin/env python3
"""Check wanda merge-lora against PEFT itself on a pruned model (any architecture; made
for the mixture-of-experts fixtures, whose LoRA template uses target_parameters).

Needs python3 with torch, transformers >= 5 and peft >= 0.20 (no GPU needed). Not run
where it was written (no PyTorch there); transform/arch_test.go and
cmd/wanda/archtools_test.go mirror the layout it checks.

    python3 peft_moe_check.py WANDA_BINARY PRUNED_DIR WORK_DIR

1. PEFT wraps the pruned model from PRUNED_DIR/lora-template with random lora_B (so the
   update is not zero) and saves the adapter: the script prints every saved key and
   shape, and asserts the nesting wanda reads (gate_up_proj behind ".base_layer",
   lora_A [r*E, in], lora_B [out, r*E]).
2. `wanda merge-lora` merges that adapter; PEFT's merge_and_unload merges it in float32.
3. Both merged models are loaded with transformers (fused experts): every kept weight
   agrees to one bf16 ulp (wanda writes bf16), every pruned weight is exactly 0 in
   wanda's output.
"""
import json
import os
import subprocess
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def main():
    wanda, pruned, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    adapter = os.path.join(work, "adapter")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(pruned, dtype=torch.float32)
    pruned_sd = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = LoraConfig.from_pretrained(os.path.join(pruned, "lora-template"))
    cfg.init_lora_weights = False  # random A and B: a nonzero update
    model = get_peft_model(base, cfg)
    model.save_pretrained(adapter)
    ok = True
    with safe_open(os.path.join(adapter, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        for k in keys:
            print(k, list(f.get_slice(k).get_shape()))
        for k in keys:
            if ".mlp.experts." in k:
                which = "gate_up_proj" if ".base_layer." in k else "down_proj"
                if len(cfg.target_parameters or []) < 2:
                    which = cfg.target_parameters[0].rsplit(".", 1)[-1]
                param = k.split(".mlp.experts")[0].removeprefix("base_model.model.") + ".mlp.experts." + which
                e, d1, d2 = pruned_sd[param].shape
                shape = list(f.get_slice(k).get_shape())
                want = [cfg.r * e, d2] if ".lora_A." in k else [d1, cfg.r * e]
                if shape != want:
                    print(f"FAIL {k}: {shape}, wanda expects {want} for {param} {[e, d1, d2]}")
                    ok = False
    merged_dir = os.path.join(work, "wanda-merged")
    subprocess.run([wanda, "merge-lora", "--model", pruned, "--adapter", adapter, "--out", merged_dir, "--force"], check=True)
    peft_sd = model.merge_and_unload().state_dict()
    wanda_sd = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).state_dict()
    worst = 0.0
    for k, p in peft_sd.items():
        w = wanda_sd[k]
        pruned_mask = pruned_sd[k] == 0
        if not torch.equal(p, pruned_sd[k]):  # adapted
            if (w[pruned_mask] != 0).any():
                print(f"FAIL {k}: pruned weights are not zero after wanda's merge")
                ok = False
            kept = ~pruned_mask
            ulp = torch.finfo(torch.bfloat16).eps * p[kept].abs().clamp(min=2**-126)
            dev = ((w[kept] - p[kept]).abs() / ulp).max().item() if kept.any() else 0.0
            worst = max(worst, dev)
            if dev > 1.0:
                print(f"FAIL {k}: wanda and PEFT differ by {dev:.2f} bf16 ulp")
                ok = False
        elif not torch.equal(w, p):
            print(f"FAIL {k}: changed by wanda only")
            ok = False
    print(json.dumps({"keys": len(keys), "max_dev_bf16_ulp": worst, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
