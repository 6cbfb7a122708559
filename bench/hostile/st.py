#!/usr/bin/env python3
"""Small safetensors tool for bench/hostile/run.sh (Python standard library only).

It makes the damaged inputs of the hostile cases and checks outputs independently of
wanda's own code:

  st.py nan      FILE TENSOR INDEX         set bf16 element INDEX (flat) of TENSOR to NaN
  st.py dtype    FILE TENSOR DTYPE         relabel TENSOR's dtype (same element size), bytes kept
  st.py shrink   FILE TENSOR               drop the last row (or element) of TENSOR
  st.py tokens   FILE N T                  write an I64 tensor "ids" [N, T] of ids i % 300
  st.py adapter  DIR MODULE IN OUT         rank-1 F32 PEFT LoRA adapter of MODULE with a NaN in lora_A
  st.py nonfinite DIR                      count NaN / Inf in every float tensor of DIR/*.safetensors
  st.py shape    DIR TENSOR                print TENSOR's shape (or "absent")
  st.py count    DIR PREFIX                count tensors whose name starts with PREFIX
"""
import glob
import json
import math
import os
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    data = raw[8 + n :]
    tensors = []
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = h["data_offsets"]
        tensors.append([name, h["dtype"], list(h["shape"]), bytearray(data[a:b])])
    return tensors, meta


def write(path, tensors, meta=None):
    header, off = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, b in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".st-tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            f.write(t[3])
    os.replace(tmp, path)


def find(tensors, name):
    for t in tensors:
        if t[0] == name:
            return t
    sys.exit(f"st.py: no tensor {name}")


def floats(dt, b):
    if dt == "F32":
        return struct.unpack(f"<{len(b) // 4}f", b)
    if dt == "F16":
        return struct.unpack(f"<{len(b) // 2}e", b)
    if dt == "BF16":
        hs = struct.unpack(f"<{len(b) // 2}H", b)
        return struct.unpack(f"<{len(hs)}f", struct.pack(f"<{len(hs)}I", *[h << 16 for h in hs]))
    return None


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "nan":
        path, name, idx = args[0], args[1], int(args[2])
        ts, meta = read(path)
        t = find(ts, name)
        assert t[1] == "BF16", t[1]
        t[3][2 * idx : 2 * idx + 2] = struct.pack("<H", 0x7FC0)
        write(path, ts, meta)
    elif cmd == "dtype":
        path, name, dt = args
        ts, meta = read(path)
        t = find(ts, name)
        assert SIZES[t[1]] == SIZES[dt]
        t[1] = dt
        write(path, ts, meta)
    elif cmd == "shrink":
        path, name = args
        ts, meta = read(path)
        t = find(ts, name)
        per = len(t[3]) // t[2][0]
        t[2][0] -= 1
        t[3] = t[3][: len(t[3]) - per]
        write(path, ts, meta)
    elif cmd == "tokens":
        path, n, tl = args[0], int(args[1]), int(args[2])
        ids = struct.pack(f"<{n * tl}q", *[i % 300 for i in range(n * tl)])
        write(path, [["ids", "I64", [n, tl], bytearray(ids)]])
    elif cmd == "adapter":
        d, mod, fin, fout = args[0], args[1], int(args[2]), int(args[3])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": [mod.split(".")[-1]]}, f)
        a = [0.01] * fin
        a[5] = float("nan")
        b = [1.0] * fout
        write(
            os.path.join(d, "adapter_model.safetensors"),
            [
                ["base_model.model." + mod + ".lora_A.weight", "F32", [1, fin], bytearray(struct.pack(f"<{fin}f", *a))],
                ["base_model.model." + mod + ".lora_B.weight", "F32", [fout, 1], bytearray(struct.pack(f"<{fout}f", *b))],
            ],
        )
    elif cmd == "nonfinite":
        nan = inf = 0
        bad = []
        for p in sorted(glob.glob(os.path.join(args[0], "*.safetensors"))):
            ts, _ = read(p)
            for name, dt, shape, b in ts:
                v = floats(dt, b)
                if v is None:
                    continue
                n1 = sum(1 for x in v if x != x)
                n2 = sum(1 for x in v if math.isinf(x))
                if n1 or n2:
                    bad.append(name)
                nan, inf = nan + n1, inf + n2
        first = f" (first: {bad[0]})" if bad else ""
        print(f"{nan} NaN and {inf} Inf values in {len(bad)} tensors{first}")
    elif cmd == "shape":
        for p in sorted(glob.glob(os.path.join(args[0], "*.safetensors"))):
            ts, _ = read(p)
            for t in ts:
                if t[0] == args[1]:
                    print(t[2])
                    return
        print("absent")
    elif cmd == "count":
        n = 0
        for p in sorted(glob.glob(os.path.join(args[0], "*.safetensors"))):
            ts, _ = read(p)
            n += sum(1 for t in ts if t[0].startswith(args[1]))
        print(n)
    else:
        sys.exit(f"st.py: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
