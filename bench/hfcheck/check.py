#!/usr/bin/env python3
"""Check wanda's outputs with the Python stack users hand them to.

Runs the wanda binary on a model, then loads what it wrote with Hugging Face
transformers, PEFT and PyTorch (CUDA when present, else CPU) and checks:

  1. transformers loads the dense and the pruned models with no missing,
     unexpected or mismatched keys;
  2. transformers' perplexity (fp32, TF32 off; the reference's protocol:
     non-overlapping windows, exp of the mean window NLL) equals `wanda eval`'s
     on the same models and tokens, and the reference implementation's numbers;
  3. sparsity_masks.safetensors is exactly the zero pattern of the weights
     transformers loaded, and (when the reference file has them) the
     reference's Wanda masks;
  4. every 2:4-pruned linear compresses with torch.sparse.to_sparse_semi_structured
     and gives the same products as the dense weight (CUDA only);
  5. PEFT reads lora-template/adapter_config.json, wraps every target module,
     trains one step without touching the frozen pruned weights; the adapter
     it saves merges with `wanda merge-lora` into exactly mask ⊙ (W + s·B·A)
     rounded to the model dtype, with the zero pattern kept.

Usage (see run.sh beside this file):
  check.py --wanda BIN --model DIR --reference reference.safetensors \
           --results results.json --work DIR [--json OUT.json]
Exits 1 if any check fails.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

failures = []
summary = {}


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def sh(*cmd):
    t = time.time()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}")
    print(f"  $ {' '.join(map(str, cmd))}  [{time.time() - t:.1f}s]", flush=True)
    return p.stdout


def load_model(path, dev):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    check(not bad, f"transformers loads {os.path.basename(path)} with no missing/unexpected/mismatched keys {bad or ''}")
    return model.to(dev).eval()


@torch.no_grad()
def ppl(model, ids, seqlen, dev, batch=16):
    n = ids.numel() // seqlen
    x = ids[: n * seqlen].view(n, seqlen)
    total = 0.0
    for i in range(0, n, batch):
        xb = x[i : i + batch].to(dev)
        logits = model(xb).logits.float()
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1), reduction="none")
        total += loss.view(xb.shape[0], -1).mean(dim=1).double().sum().item()
    return math.exp(total / n), n


def unpack_mask(packed, shape, bitorder):
    bits = np.unpackbits(packed, bitorder=bitorder)[: int(np.prod(shape))]
    return torch.from_numpy(bits.reshape(shape).astype(bool))


def linear_names(model):
    return [n for n, _ in model.named_parameters() if n.endswith(".weight") and any(f".{p}." in n for p in LINEARS)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wanda", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--reference", required=True, help="safetensors with calib_input_ids and wikitext_test_ids")
    ap.add_argument("--results", help="the reference implementation's results.json")
    ap.add_argument("--work", required=True)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--json")
    a = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    import peft
    import transformers

    summary["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    print(summary["versions"], flush=True)
    os.makedirs(a.work, exist_ok=True)
    ref = {}
    if a.results:
        for r in json.load(open(a.results))["runs"]:
            ref[(r["method"], r["pattern"])] = r["wikitext2_ppl"]

    # 1. Prune with wanda (the reference's calibration windows), evaluate with wanda.
    calib = ["--calib-tokens", a.reference, "--calib-key", "calib_input_ids", "--seqlen", a.seqlen]
    outs = {"dense": a.model, "unstructured": os.path.join(a.work, "wanda-unstructured"),
            "2:4": os.path.join(a.work, "wanda-2of4")}
    for pat in ("unstructured", "2:4"):
        shutil.rmtree(outs[pat], ignore_errors=True)
        sh(a.wanda, "prune", "--model", a.model, "--out", outs[pat], "--method", "wanda", "--pattern", pat, *calib)
    go_ppl = {}
    for k, d in outs.items():
        r = json.loads(sh(a.wanda, "eval", "--model", d, "--tokens", a.reference, "--tokens-key", "wikitext_test_ids",
                          "--seqlen", a.seqlen, "--json"))
        go_ppl[k] = r["ppl"]

    # 2. transformers: load, perplexity.
    with safe_open(a.reference, "pt") as f:
        ids = f.get_tensor("wikitext_test_ids").long().flatten()
        ref_masks = {k: f.get_tensor(k).numpy() for k in f.keys() if k.startswith("wanda:")}
    models = {}
    summary["ppl"] = {}
    for k, d in outs.items():
        models[k] = load_model(d, dev)
        p, n = ppl(models[k], ids, a.seqlen, dev)
        r = ref.get(("dense", "dense") if k == "dense" else ("wanda", k))
        summary["ppl"][k] = {"transformers": p, "wanda_eval": go_ppl[k], "reference": r, "windows": n}
        check(abs(p - go_ppl[k]) / p < 1e-4, f"{k}: transformers ppl {p:.4f} = wanda eval {go_ppl[k]:.4f} (rel {abs(p - go_ppl[k]) / p:.1e} < 1e-4)")
        if r is not None:
            check(abs(p - r) / r < 1e-3, f"{k}: transformers ppl {p:.4f} = reference implementation {r:.4f} (rel {abs(p - r) / r:.1e} < 1e-3)")

    # 3. Masks.
    for k in ("unstructured", "2:4"):
        sd = {n: w.detach().cpu() for n, w in models[k].named_parameters()}
        names = linear_names(models[k])
        with safe_open(os.path.join(outs[k], "sparsity_masks.safetensors"), "np") as f:
            mmeta = f.metadata()
            bitorder = mmeta.get("bit_order", "little")
            ours = {n: unpack_mask(f.get_tensor(n), tuple(sd[n].shape), bitorder) for n in f.keys()}
        same = all(torch.equal(ours[n], sd[n] == 0) for n in names) and set(ours) == set(names)
        zeros = sum(int((sd[n] == 0).sum()) for n in names)
        total = sum(sd[n].numel() for n in names)
        check(same, f"{k}: sparsity_masks.safetensors = zero pattern of the {len(names)} linears transformers loaded (sparsity {zeros / total:.6f})")
        key = "wanda:" + k
        refk = {n[len(key) + 1:]: v for n, v in ref_masks.items() if n.startswith(key + "/")}
        if refk:
            diff = 0
            for n, packed in refk.items():
                m = unpack_mask(packed, tuple(sd[n].shape), "big")
                diff += int((m != (sd[n] == 0)).sum())
            check(diff == 0, f"{k}: zero pattern = the reference implementation's Wanda masks ({diff} of {total} entries differ)")
        if k == "2:4":
            ok = all(bool(((sd[n].view(-1, 4) == 0).sum(dim=1) >= 2).all()) for n in names)
            check(ok, "2:4: every group of 4 consecutive inputs has at least 2 zeros")

    # 4. 2:4 through PyTorch's semi-structured sparse kernels.
    if dev == "cuda":
        from torch.sparse import to_sparse_semi_structured

        worst, done, err = 0.0, 0, None
        try:
            for n in linear_names(models["2:4"]):
                w = dict(models["2:4"].named_parameters())[n].detach().to(torch.float16)
                ws = to_sparse_semi_structured(w)
                if not torch.equal(ws.to_dense(), w):
                    worst = float("inf")
                x = torch.randn(64, w.shape[1], device=dev, dtype=torch.float16)
                y, ys = F.linear(x, w), F.linear(x, ws)
                worst = max(worst, ((ys - y).abs().max() / y.abs().max()).item())
                done += 1
        except Exception as e:  # noqa: BLE001 - report the library's refusal as it is
            err = f"{type(e).__name__}: {e}"
        summary["semi_structured"] = {"tensors": done, "max_rel_diff": worst, "error": err}
        check(err is None and done > 0 and worst < 1e-2,
              f"2:4: {done} linears compress with to_sparse_semi_structured, products within {worst:.1e} of dense {err or ''}")

    # 5. PEFT: the LoRA template, one training step, save, wanda merge-lora.
    from peft import LoraConfig, get_peft_model

    tmpl = os.path.join(outs["unstructured"], "lora-template")
    cfg = LoraConfig.from_pretrained(tmpl)
    base = models.pop("unstructured")
    frozen = {n: w.detach().clone() for n, w in base.named_parameters() if n in set(linear_names(base))}
    pm = get_peft_model(base, cfg)
    lora_a = [n for n, _ in pm.named_parameters() if "lora_A" in n]
    check(len(lora_a) == len(frozen), f"PEFT wraps every pruned linear ({len(lora_a)} LoRA modules for {len(frozen)} linears)")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:  # PEFT starts B at zero; give the adapter something to merge
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    pm.train()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    x = ids[: 4 * a.seqlen].view(4, a.seqlen).to(dev)
    loss = pm(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    pm.eval()
    cur = {n.replace(".base_layer", ""): p.detach() for n, p in pm.get_base_model().named_parameters()}
    same = all(torch.equal(w, cur[n]) for n, w in frozen.items())
    check(same and math.isfinite(loss.item()), f"PEFT trains one step (loss {loss.item():.3f}); the frozen pruned weights are unchanged")
    adapter = os.path.join(a.work, "adapter")
    shutil.rmtree(adapter, ignore_errors=True)
    pm.save_pretrained(adapter)
    merged = os.path.join(a.work, "merged")
    shutil.rmtree(merged, ignore_errors=True)
    sh(a.wanda, "merge-lora", "--model", outs["unstructured"], "--adapter", adapter, "--out", merged)
    got = load_file(os.path.join(merged, "model.safetensors"))
    ad = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    src = load_file(os.path.join(outs["unstructured"], "model.safetensors"))
    scaling = cfg.lora_alpha / (math.sqrt(cfg.r) if cfg.use_rslora else cfg.r)
    worst_ulp, mism, pattern_kept = 0, 0, True
    for n in frozen:
        stem = n[: -len(".weight")]
        A = ad[f"base_model.model.{stem}.lora_A.weight"].double()
        B = ad[f"base_model.model.{stem}.lora_B.weight"].double()
        w0 = src[n]
        want = (w0.double() + scaling * (B @ A)) * (w0 != 0)
        w = got[n]
        pattern_kept &= bool((w[w0 == 0] == 0).all())
        # Distance from the float64 result in units in the last place of the
        # model dtype at that value: 2^(e-p) for v = m·2^e, m in [0.5, 1).
        p_bits = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}[w.dtype]
        _, e = torch.frexp(want.float())
        spacing = torch.ldexp(torch.ones_like(want), (e - p_bits).double())
        worst_ulp = max(worst_ulp, float(((w.double() - want).abs() / spacing).max()))
        mism += int((w != want.to(w.dtype)).sum())
    summary["merge_lora"] = {"max_ulp": worst_ulp, "entries_not_equal_to_rounded_float64": mism, "scaling": scaling}
    check(worst_ulp <= 1.0, f"merge-lora = mask ⊙ (W + {scaling:g}·B·A) computed in float64, within {worst_ulp:.2f} ulp of {next(iter(got.values())).dtype} ({mism} entries differ from its correctly rounded value)")
    check(pattern_kept, "merge-lora keeps every pruned weight at zero")
    mm = load_model(merged, dev)
    p, _ = ppl(mm, ids, a.seqlen, dev)
    summary["ppl"]["merged"] = {"transformers": p}
    print(f"  merged model ppl {p:.3f} (random adapter: only its finiteness matters)")
    check(math.isfinite(p), "merged model evaluates")

    summary["failures"] = failures
    if a.json:
        json.dump(summary, open(a.json, "w"), indent=2)
    print(f"\n{len(failures)} failed" if failures else "\nall checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
