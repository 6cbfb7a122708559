#!/usr/bin/env python3
"""Generates regex_cases.json: reference matches of the GPT-2, Llama-3 and
Qwen2 pre-tokenization regexes, computed by Python's backtracking `re`
engine (leftmost-first alternation, like Oniguruma) over strings drawn from a
small alphabet. The Unicode classes are replaced by explicit character
classes that are exact for that alphabet, so no Unicode tables are involved.
Run once: python3 gen_regex_cases.py > regex_cases.json
"""
import json, random, re

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéÆßДжÜï"
DIGITS = "0123456789٣²"
SPACES = " \t\n\r\u00a0\u3000"
OTHER = "'.,!-_€😀"
ALPHA = "aBzéÆßДж" + DIGITS + SPACES + OTHER + "sStTrRmMlLdDvVeE"
WORDS = ["'s", "'T", "'re", "'VE", "'m", "'Ll", "'d", "'x", " '", "  ", "\r\n", "\n\n", "123456", "abc", " x"]

L = "[" + LETTERS + "]"
N = "[" + DIGITS + "]"
S = "[" + re.escape(SPACES) + "]"
NS = "[^" + re.escape(SPACES) + "]"
OTH = "[^" + re.escape(SPACES) + LETTERS + DIGITS + "]"
NOT_CRLF_L_N = "[^\r\n" + LETTERS + DIGITS + "]"

PATTERNS = {
    "gpt2": "'s|'t|'re|'ve|'m|'ll|'d| ?%s+| ?%s+| ?%s+|%s+(?!%s)|%s+" % (L, N, OTH, S, NS, S),
    "llama3": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|%s?%s+|%s{1,3}| ?%s+[\r\n]*|%s*[\r\n]+|%s+(?!%s)|%s+"
    % (NOT_CRLF_L_N, L, N, OTH, S, S, NS, S),
    "qwen2": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|%s?%s+|%s| ?%s+[\r\n]*|%s*[\r\n]+|%s+(?!%s)|%s+"
    % (NOT_CRLF_L_N, L, N, OTH, S, S, NS, S),
}

def spans(pat, s):
    out = []
    for m in re.finditer(pat, s):
        out.append([len(s[: m.start()].encode()), len(s[: m.end()].encode())])
    return out

rng = random.Random(20240611)
texts = ["", " ", "a", "Hello world", "Don't you think it's 'QUOTED'? I'LL go, we'd've.",
         "   leading and trailing   ", "a  b   c\t\td", "x \n\n  y", "tabs\t\n\t end\n",
         "1234567 89", "Ünï ÆB 2²٣", "'s's 'S'T"]
for _ in range(400):
    n = rng.randint(1, 24)
    parts = []
    while len(parts) < n:
        if rng.random() < 0.2:
            parts.append(rng.choice(WORDS))
        else:
            parts.append(rng.choice(ALPHA))
    texts.append("".join(parts))

cases = []
for t in texts:
    # Restrict to the alphabet (the fixed texts may use other letters).
    if any(c not in LETTERS + DIGITS + SPACES + OTHER for c in t):
        continue
    cases.append({"text": t, **{k: spans(p, t) for k, p in PATTERNS.items()}})
print(json.dumps({"generated_by": "gen_regex_cases.py (Python re, explicit classes)",
                  "cases": cases}, ensure_ascii=False, indent=0))
