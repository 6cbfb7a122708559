#!/usr/bin/env bash
# Compares the outputs of two wanda binaries byte for byte on tiny-llama-a (../shared):
# wanda, magnitude, sparsegpt (unstructured), wanda and magnitude 2:4, wanda 4:8, the
# variant, --pack, --workdir, and merge-lora of a generated adapter. wanda_report.json is
# compared without its timing and memory fields.
#
#   bench/identical.sh OLD_BINARY NEW_BINARY [NSAMPLES [SEQLEN]]
#
# Used to show that a refactor or a memory change leaves every output unchanged.
set -euo pipefail
old=$1 new=$2 ns=${3:-16} sl=${4:-128}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
model=$shared/models/tiny-llama-a
calib=$shared/data/c4/c4_train00000_head1000.jsonl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
report_core() { python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
for k in ("seconds","peak_rss_anon_bytes","peak_rss_bytes","output","model"): r.pop(k,None)
for l in r.get("layers",[]):
    for k in list(l):
        if "seconds" in k: l.pop(k)
print(json.dumps(r,sort_keys=True))' "$1"; }
json_core() { python3 -c 'import json,sys
r=json.load(open(sys.argv[1])); r.pop("base_model_name_or_path",None); print(json.dumps(r,sort_keys=True))' "$1"; }
compare() { # name dirA dirB
	local name=$1 a=$2 b=$3 bad=0
	for f in $(cd "$a" && find . -type f | sort); do
		if [ "$(basename "$f")" = adapter_config.json ]; then # names the output directory
			[ "$(json_core "$a/$f")" = "$(json_core "$b/$f")" ] || { echo "  $name: $f differs"; bad=1; }
		elif [ "$(basename "$f")" = wanda_report.json ]; then
			[ "$(report_core "$a/$f")" = "$(report_core "$b/$f")" ] || { echo "  $name: $f differs"; bad=1; }
		elif ! cmp -s "$a/$f" "$b/$f"; then echo "  $name: $f differs"; bad=1; fi
	done
	[ "$(cd "$a" && find . -type f | sort)" = "$(cd "$b" && find . -type f | sort)" ] || { echo "  $name: file lists differ"; bad=1; }
	if [ $bad = 0 ]; then echo "identical: $name ($(du -sb "$a" | cut -f1) bytes)"; else fail=1; fi
}
cases=(
	"wanda|--method wanda"
	"magnitude|--method magnitude"
	"sparsegpt|--method sparsegpt"
	"wanda-2:4|--method wanda --pattern 2:4"
	"magnitude-2:4|--method magnitude --pattern 2:4"
	"wanda-4:8|--method wanda --pattern 4:8"
	"wanda-variant|--method wanda --variant"
	"wanda-2:4-pack|--method wanda --pattern 2:4 --pack"
	"wanda-pack|--method wanda --pack"
)
for c in "${cases[@]}"; do
	name=${c%%|*} args=${c#*|}
	for v in old new; do
		bin=${!v}
		# shellcheck disable=SC2086
		"$bin" prune --model "$model" --out "$work/$v-$name" $args --calib "$calib" --nsamples "$ns" --seqlen "$sl" >/dev/null 2>"$work/$v-$name.err" ||
			{ echo "  $v $name failed:"; tail -3 "$work/$v-$name.err"; fail=1; }
	done
	compare "$name" "$work/old-$name" "$work/new-$name"
done
# --workdir (checkpointed run) against the plain new run.
"$new" prune --model "$model" --out "$work/new-wd" --method wanda --calib "$calib" --nsamples "$ns" --seqlen "$sl" --workdir "$work/wd" >/dev/null 2>&1
compare "wanda --workdir vs plain" "$work/new-wanda" "$work/new-wd"
# merge-lora of a generated adapter (PEFT layout) on the wanda output.
python3 - "$work/adapter" <<'PY'
import json, os, struct, sys, random
d = sys.argv[1]; os.makedirs(d)
random.seed(0)
mods = ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]
shapes = {"q_proj":(384,384),"k_proj":(384,384),"v_proj":(384,384),"o_proj":(384,384),"gate_proj":(1024,384),"up_proj":(1024,384),"down_proj":(384,1024)}
r = 4; tensors = {}
for l in range(6):
    for m in mods:
        part = "self_attn" if m.endswith(("q_proj","k_proj","v_proj","o_proj")) else "mlp"
        o, i = shapes[m]; base = f"base_model.model.model.layers.{l}.{part}.{m}"
        tensors[base+".lora_A.weight"] = ((r, i), [random.gauss(0, 0.02) for _ in range(r*i)])
        tensors[base+".lora_B.weight"] = ((o, r), [random.gauss(0, 0.02) for _ in range(o*r)])
hdr = {}; off = 0; blobs = []
for k in sorted(tensors):
    shape, vals = tensors[k]; b = struct.pack("<%df" % len(vals), *vals)
    hdr[k] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off+len(b)]}; off += len(b); blobs.append(b)
h = json.dumps(hdr).encode(); h += b" " * ((8 - len(h) % 8) % 8)
with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]
json.dump({"peft_type":"LORA","r":r,"lora_alpha":8,"target_modules":mods,"fan_in_fan_out":False,"bias":"none","use_rslora":False}, open(os.path.join(d,"adapter_config.json"),"w"))
PY
for v in old new; do
	bin=${!v}
	"$bin" merge-lora --model "$work/$v-wanda" --adapter "$work/adapter" --out "$work/$v-merged" >/dev/null 2>"$work/$v-merged.err" ||
		{ echo "  $v merge-lora failed:"; tail -3 "$work/$v-merged.err"; fail=1; }
done
compare "merge-lora" "$work/old-merged" "$work/new-merged"
exit $fail
