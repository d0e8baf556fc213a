"""PyTorch side of the BiART generator benchmark: the model of reference/biart_reference.py (the Rust
`Biart`, spec.md §1.6, §3, §4.7), timed with the shared protocol of bench_timing.py (one warm-up
call, `reps` timed calls).

    .venv/bin/python benches/biart_step.py --config paper --batch 8 --reps 2 --threads 2

Sections (--sections, comma-separated, default train,sample):
  train    one generator training step: zero_grad, forward + backward of
           (loss_total_t2i + loss_total_i2t) / 2, clip_grad_norm_(1.0), AdamW(lr 1e-3, betas (0.9, 0.95),
           weight_decay 0.01 on Linear weights only) step. `median_s` / `min_s` of the output are this
           step's, so `tessera bench` (which reads `median_s` of the last stdout line) works unchanged.
  sample   t2i generation of all image tokens for --sample-batch captions (T 1, filter_thres 0.9 =
           Bi-DALL-E's top_k(thres)), once with the KV cache (one token per step) and once recomputing
           the whole prefix every step (Bi-DALL-E); each reports seconds per batch and image tokens/s
           (= sample_batch · image_side² / median_s). --sample-reps (default 1) timed calls after the
           warm-up; the no-cache pass is the slow one (O(L²) positions).

Config (mirrors vqgan_step.py's --config presets), later sources override earlier ones:
  --config paper|tiny    preset; paper = BiartConfig defaults (Bi-DALL-E MNIST64x64: n_layer 8, n_head 8,
                         n_embd 256, head_dim 64, text_len 50, full attention) with text_vocab 78,
                         image_vocab 128, image_side 16; tiny = the test fixture's config (smoke runs)
  --model-json JSON|PATH  BiartConfig fields as the Rust [model] table serialises them (snake_case,
                         e.g. '{"attn_types": ["axial_row", "axial_col"], "n_layer": 4}')
  --n-layer/--n-head/--n-embd/--head-dim/--text-vocab/--text-len/--image-vocab/--image-side/
  --attn (comma-separated types) individual overrides.

Output: one JSON line (the last line of stdout)
  {"median_s", "min_s", "torch",                      <- train step (the bench_timing protocol keys)
   "train": {"median_s", "min_s", "reps", "batch"},
   "sample_cache":   {"median_s", "min_s", "reps", "batch", "tokens", "image_tokens_per_s"},
   "sample_nocache": {... same ...},
   "config": {BiartConfig fields}, "threads", "params"}
Sections left out are absent (with only `sample`, the top-level median_s/min_s are the cached
sampler's). Batches are random: captions [CLS] w… [SEP] [PAD]… with random lengths, uniform codes (seed 0).
"""
import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_timing import report  # noqa: E402
from biart_reference import CLS, PAD, SEP, Biart, BiartConfig, FIXTURE_CONFIG, decay_groups  # noqa: E402

CONFIGS = {
    "paper": dict(n_layer=8, n_head=8, n_embd=256, head_dim=64, text_vocab=78, text_len=50, image_vocab=128,
                  image_side=16, attn_types=["full"]),
    "tiny": dict(FIXTURE_CONFIG),
}

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--config", choices=sorted(CONFIGS), default="paper")
p.add_argument("--model-json", default=None, help="BiartConfig fields as JSON text or a path to a JSON file")
for flag in ("n-layer", "n-head", "n-embd", "head-dim", "text-vocab", "text-len", "image-vocab", "image-side"):
    p.add_argument(f"--{flag}", type=int, default=None)
p.add_argument("--attn", default=None, help="attention types, comma-separated (full,axial_row,axial_col,conv_like)")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--reps", "--repeats", dest="reps", type=int, default=2, help="timed training steps")
p.add_argument("--sample-batch", type=int, default=8)
p.add_argument("--sample-reps", type=int, default=1, help="timed generations per sampler")
p.add_argument("--sections", default="train,sample", help="train, sample or both")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--lr", type=float, default=1e-3)
a = p.parse_args()
torch.set_num_threads(a.threads)

cfg_dict = dict(CONFIGS[a.config])
if a.model_json:
    src = a.model_json
    cfg_dict.update(json.load(open(src)) if os.path.isfile(src) else json.loads(src))
for key in ("n_layer", "n_head", "n_embd", "head_dim", "text_vocab", "text_len", "image_vocab", "image_side"):
    if getattr(a, key) is not None:
        cfg_dict[key] = getattr(a, key)
if a.attn:
    cfg_dict["attn_types"] = a.attn.split(",")
cfg = BiartConfig(**cfg_dict)
sections = set(a.sections.split(","))
assert sections <= {"train", "sample"} and sections, "--sections: train, sample or both"

torch.manual_seed(0)
model = Biart(cfg)


def random_batch(b):
    """Captions [CLS] w1..wn [SEP] [PAD]... (1 <= n <= Lt-2, words in [3, Vt)) and uniform codes."""
    text = torch.full((b, cfg.text_len), PAD, dtype=torch.long)
    for r in range(b):
        n = int(torch.randint(1, cfg.text_len - 1, ()))
        text[r, 0] = CLS
        text[r, 1:1 + n] = torch.randint(3, cfg.text_vocab, (n,))
        text[r, 1 + n] = SEP
    codes = torch.randint(0, cfg.image_vocab, (b, cfg.image_len))
    return text, codes


def timed(fn, reps):
    """bench_timing.report's numbers, read back from the JSON line it prints."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        report(fn, reps)
    return json.loads(buf.getvalue().strip().splitlines()[-1])


result = {}
text, codes = random_batch(max(a.batch, a.sample_batch))

if "train" in sections:
    model.train()
    opt = torch.optim.AdamW(decay_groups(model, 0.01), lr=a.lr, betas=(0.9, 0.95))
    t_text, t_codes = text[:a.batch], codes[:a.batch]

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = (model.loss("t2i", t_text, t_codes)[0] + model.loss("i2t", t_text, t_codes)[0]) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    r = timed(train_step, a.reps)
    result["train"] = dict(median_s=r["median_s"], min_s=r["min_s"], reps=a.reps, batch=a.batch)

if "sample" in sections:
    model.eval()
    captions = text[:a.sample_batch]
    n_tokens = a.sample_batch * cfg.image_len
    for name, use_cache in (("sample_cache", True), ("sample_nocache", False)):
        def gen(use_cache=use_cache):
            out = model.generate("t2i", captions, temperature=1.0, filter_thres=0.9, use_cache=use_cache)
            assert out.shape == (a.sample_batch, cfg.image_len)
            return out

        torch.manual_seed(1)
        r = timed(gen, a.sample_reps)
        result[name] = dict(median_s=r["median_s"], min_s=r["min_s"], reps=a.sample_reps, batch=a.sample_batch,
                            tokens=n_tokens, image_tokens_per_s=n_tokens / r["median_s"])

top = result["train"] if "train" in result else result["sample_cache"]
line = {"median_s": top["median_s"], "min_s": top["min_s"], "torch": torch.__version__}
line.update(result)
line.update(config=dataclasses.asdict(cfg), threads=a.threads, params=sum(q.numel() for q in model.parameters()))
print(json.dumps(line))
