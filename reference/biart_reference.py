"""PyTorch re-implementation of tessera-models' BiART generator (crates/tessera-models/src/biart/
{mod,masks,sample}.rs; spec.md §1.6, §3.1-§3.5, §4.7), and the writer of its test fixture.

The module mirrors the Rust `Biart` one to one:
- parameter names are the Rust VarStore's: tok_emb.weight, seg_emb.weight (segment embedding on),
  text_pos_emb, image_pos_row / image_pos_col (learned image positions only),
  blocks.{i}.ln1.{weight,bias}, blocks.{i}.attn.qkv.{weight,bias}, blocks.{i}.attn.proj.{weight,bias},
  blocks.{i}.ln2.{weight,bias}, blocks.{i}.mlp.fc.{weight,bias}, blocks.{i}.mlp.proj.{weight,bias},
  ln_f.{weight,bias}, head.weight (no bias). Linear weights are (out, in), as in tch.
- vocabulary: text ids [0, Vt), then Lt pad slots [Vt, Vt+Lt) (unique pads: [PAD] at text position p
  becomes Vt+p), then image codes [Vt+Lt, Vt+Lt+K);
- the fixed 2-D sinusoid (not a parameter: a buffer, computed in float64 and cast to float32);
- the boolean (L, L) attention masks per type (full, axial_row, axial_col, conv_like) and direction
  (t2i, i2t), AND-ed with the key-padding mask ([PAD] keys hidden) in every layer, fed to
  F.scaled_dot_product_attention as a boolean mask (True = may attend);
- the additive (L, V) logit masks (0 / -inf);
- the loss (L_cond + w L_tgt)/(1 + w), ignore_index -100 for [PAD]=0 text targets;
- exact GELU, LayerNorm eps 1e-5, pre-LN blocks, KV-cached and prefix-recomputing sampling.

Fixture (run from the repository root with the project's venv):
    .venv/bin/python reference/biart_reference.py crates/tessera-models/tests/fixtures/biart.safetensors
Config: n_layer 4, n_head 2, n_embd 16, head_dim 8, text_vocab 9, text_len 6, image_vocab 7,
image_side 3, attn_types [full, axial_row, axial_col, conv_like] (layer i uses type i), conv_kernel 3,
unique pads, segment embedding on, fixed image positions, loss_weight 7, dropout 0. V = 22, L = 15,
image offset 15. Seed 0; every Linear/Embedding weight and text_pos_emb ~ N(0, 0.02); Linear biases
~ N(0, 0.02) (Rust initialises them to 0; random here so they are tested); LayerNorm weights
1 + N(0, 0.1), biases N(0, 0.1). All float tensors are float32, integer tensors int64.
    model.<name>           every parameter of the Rust VarStore, under its Rust name
    image_pos_fixed        (9, 16)  the fixed 2-D sinusoid (extra; not a VarStore variable)
    text                   (2, 6)   int64 raw BPE ids, [PAD] = 0
    codes                  (2, 9)   int64 codebook indices
    logits_{d}             (2, 14, 22) for d in {t2i, i2t}: masked logits of the forward on the
                           sequence without its last token (p0 = 0, no cache, eval).
                           LOGIT -inf STORAGE: every -inf of the logit mask is REPLACED BY -1e30
                           (a finite float32); all other entries are the exact logits. A reader
                           should compare finite entries and check that the -1e30 entries are
                           exactly where its own logits are -inf (e.g. ref <= -1e29 <=> !isfinite).
    loss_total_{d}         0-dim float32  (L_cond + 7 L_tgt)/8
    loss_condition_{d}     0-dim float32  cross-entropy over the condition's tokens
    loss_target_{d}        0-dim float32  cross-entropy over the target's tokens
    grad.tok_emb.weight            (22, 16)  d(loss_total_t2i + loss_total_i2t)/d param
    grad.blocks.1.attn.qkv.weight  (48, 16)
    grad.head.weight               (22, 16)
"""
import os
import sys
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save  # noqa: E402

PAD, CLS, SEP = 0, 1, 2
DIRECTIONS = ("t2i", "i2t")
ATTN_TYPES = ("full", "axial_row", "axial_col", "conv_like")


@dataclass
class BiartConfig:
    """Same fields, names and defaults as the Rust `BiartConfig` (serde snake_case values), except
    the block options (feed_forward, ff_mult, layer_scale, qkv_bias, dropout_sites, head_bias): this
    module is the minGPT block of their defaults; Bi-DALL-E's blocks are checked against the upstream
    code itself by reference/bidalle_block_fixtures.py."""
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 256
    head_dim: int = 64
    text_vocab: int = 0
    text_len: int = 50
    image_vocab: int = 0
    image_side: int = 0
    image_positions: str = "fixed"  # fixed | learned
    pad_tokens: str = "unique"  # unique | shared
    attn_types: list = field(default_factory=lambda: ["full"])
    conv_kernel: int = 5
    segment_embedding: bool = True
    loss_weight: float = 7.0
    dropout: float = 0.0

    @property
    def image_len(self):
        return self.image_side * self.image_side

    @property
    def total(self):
        return self.text_len + self.image_len

    @property
    def image_offset(self):
        return self.text_vocab + self.text_len

    @property
    def vocab_size(self):
        return self.image_offset + self.image_vocab

    def check(self):
        if self.text_vocab < 5 or self.image_vocab == 0 or self.image_side == 0:
            raise ValueError("text_vocab, image_vocab and image_side must be set")
        if self.text_len < 2:
            raise ValueError("text_len must leave room for [CLS] and [SEP]")
        if min(self.n_layer, self.n_head, self.head_dim, self.n_embd) <= 0:
            raise ValueError("n_layer, n_head, head_dim and n_embd must be positive")
        if not self.attn_types or any(a not in ATTN_TYPES for a in self.attn_types):
            raise ValueError(f"attn_types must be a non-empty list of {ATTN_TYPES}")
        if self.conv_kernel % 2 == 0:
            raise ValueError("conv_kernel must be odd")
        if not self.loss_weight >= 0:
            raise ValueError("loss_weight must be >= 0")
        if self.image_positions not in ("fixed", "learned") or self.pad_tokens not in ("unique", "shared"):
            raise ValueError("image_positions: fixed|learned, pad_tokens: unique|shared")


# ---------------------------------------------------------------------------------------------
# Geometry (masks.rs)


def image_index(c, d, p):
    """Image index of absolute position p under direction d, or None for a text position."""
    if d == "t2i":
        return p - c.text_len if p >= c.text_len else None
    return p if p < c.image_len else None


def segment(c, d, p):
    """0 = condition, 1 = generation target (L-Verse)."""
    cond_len = c.text_len if d == "t2i" else c.image_len
    return int(p >= cond_len)


def first_target_output(c, d):
    return c.text_len - 1 if d == "t2i" else c.image_len - 1


def _image_pair_allowed(c, kind, i, j):
    s, half = c.image_side, c.conv_kernel // 2
    ri, ci, rj, cj = i // s, i % s, j // s, j % s
    if j > i:
        return False
    if kind == "full":
        return True
    if kind == "axial_row":
        return ri == rj
    if kind == "axial_col":
        return ci == cj
    if kind == "conv_like":
        return abs(ri - rj) <= half and abs(ci - cj) <= half
    raise ValueError(kind)


def allowed(c, kind, d, q, k):
    if k > q:
        return False
    if kind == "full":
        return True
    i, j = image_index(c, d, q), image_index(c, d, k)
    if i is not None and j is not None:
        return _image_pair_allowed(c, kind, i, j)
    # an image query sees all text (t2i); a text query sees all image (i2t) and causal text
    return True


def attention_mask(c, kind, d):
    """(L, L) bool, True where query q may attend to key k."""
    n = c.total
    return torch.tensor([[allowed(c, kind, d, q, k) for k in range(n)] for q in range(n)], dtype=torch.bool)


def logit_mask(c, d):
    """(L, V) float32, 0 where position s may emit the id, -inf elsewhere."""
    n, v, off, vt = c.total, c.vocab_size, c.image_offset, c.text_vocab
    split = first_target_output(c, d)
    m = torch.full((n, v), float("-inf"), dtype=torch.float32)
    for s in range(n):
        predicts_image = s >= split if d == "t2i" else s < split
        if predicts_image:
            m[s, off:v] = 0.0
        else:
            m[s, 0:vt] = 0.0
    return m


def fixed_2d_positions(side, dim):
    """Bi-DALL-E's FixedPositionalEmbedding2D: c = ceil(dim/4)*2, f_i = 1/10000^(2i/c), channels
    [sin(x f), cos(x f), sin(y f), cos(y f)] (x = column, y = row), cut to dim, row-major (side^2, dim)."""
    c = -(-dim // 4) * 2
    freqs = torch.tensor([1.0 / 10000.0 ** (i / c) for i in range(0, c, 2)], dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                            indexing="ij")
    x = xs.reshape(-1, 1) * freqs
    y = ys.reshape(-1, 1) * freqs
    emb = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)[:, :dim]
    return emb.to(torch.float32).contiguous()


# ---------------------------------------------------------------------------------------------
# Model (mod.rs)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        inner = c.n_head * c.head_dim
        self.qkv = nn.Linear(c.n_embd, 3 * inner, bias=True)
        self.proj = nn.Linear(inner, c.n_embd, bias=True)
        self.n_head, self.head_dim, self.dropout = c.n_head, c.head_dim, c.dropout

    def forward(self, x, mask, cache=None, layer=None):
        """x (B, t, C), mask (B, 1, t, T) bool; cache: list of per-layer (k, v) or None."""
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cache is not None:
            if cache[layer] is not None:
                pk, pv = cache[layer]
                k = torch.cat([pk, k], 2)
                v = torch.cat([pv, v], 2)
            cache[layer] = (k, v)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=False)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, self.n_head * self.head_dim))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c.n_embd, 4 * c.n_embd)
        self.proj = nn.Linear(4 * c.n_embd, c.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="none"))


class Block(nn.Module):
    def __init__(self, c, kind):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.n_embd, eps=1e-5)
        self.attn = SelfAttention(c)
        self.ln2 = nn.LayerNorm(c.n_embd, eps=1e-5)
        self.mlp = MLP(c)
        self.kind = kind
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, mask, cache=None, layer=None):
        x = x + self.drop(self.attn(self.ln1(x), mask, cache, layer))
        return x + self.drop(self.mlp(self.ln2(x)))


class Biart(nn.Module):
    def __init__(self, c: BiartConfig):
        super().__init__()
        c.check()
        self.config = c
        C = c.n_embd
        self.tok_emb = nn.Embedding(c.vocab_size, C)
        self.seg_emb = nn.Embedding(2, C) if c.segment_embedding else None
        self.text_pos_emb = nn.Parameter(torch.randn(c.text_len, C) * 0.02)
        if c.image_positions == "fixed":
            self.register_buffer("image_pos_fixed", fixed_2d_positions(c.image_side, C), persistent=False)
        else:
            self.image_pos_row = nn.Parameter(torch.randn(c.image_side, C) * 0.02)
            self.image_pos_col = nn.Parameter(torch.randn(c.image_side, C) * 0.02)
        self.blocks = nn.ModuleList(Block(c, c.attn_types[i % len(c.attn_types)]) for i in range(c.n_layer))
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.head = nn.Linear(C, c.vocab_size, bias=False)
        self.drop = nn.Dropout(c.dropout)
        for m in self.modules():  # the Rust initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for d in DIRECTIONS:
            for kind in set(c.attn_types):
                self.register_buffer(f"attn_mask_{kind}_{d}", attention_mask(c, kind, d), persistent=False)
            self.register_buffer(f"logit_mask_{d}", logit_mask(c, d), persistent=False)

    # -- inputs ---------------------------------------------------------------------------------

    def positions(self):
        c = self.config
        if c.image_positions == "fixed":
            image = self.image_pos_fixed
        else:
            image = (self.image_pos_row.unsqueeze(1) + self.image_pos_col.unsqueeze(0)).view(c.image_len, c.n_embd)
        return self.text_pos_emb, image

    def text_ids(self, text, p0=0):
        """Vocabulary ids of raw text ids at text positions p0..p0+n (pads -> their slot)."""
        c = self.config
        if c.pad_tokens == "shared":
            return text
        n = text.shape[1]
        slots = torch.arange(p0, p0 + n, device=text.device) + c.text_vocab
        return torch.where(text == PAD, slots.unsqueeze(0).expand_as(text), text)

    def sequence(self, d, text, codes):
        """(B, L) vocabulary ids: [text ; image] (t2i) or [image ; text] (i2t)."""
        t = self.text_ids(text, 0)
        i = codes + self.config.image_offset
        return torch.cat([t, i], 1) if d == "t2i" else torch.cat([i, t], 1)

    def key_keep(self, d, text):
        """(B, L) bool, False at [PAD] text keys."""
        ones = torch.ones(text.shape[0], self.config.image_len, dtype=torch.bool, device=text.device)
        t = text != PAD
        return torch.cat([t, ones], 1) if d == "t2i" else torch.cat([ones, t], 1)

    def embed(self, ids, d, p0):
        t = ids.shape[1]
        text_pos, image_pos = self.positions()
        pos = torch.cat([text_pos, image_pos], 0) if d == "t2i" else torch.cat([image_pos, text_pos], 0)
        x = self.tok_emb(ids) + pos[p0:p0 + t].unsqueeze(0)
        if self.seg_emb is not None:
            segs = torch.tensor([segment(self.config, d, p) for p in range(p0, p0 + t)], device=ids.device)
            x = x + self.seg_emb(segs).unsqueeze(0)
        return x

    # -- forward / loss -------------------------------------------------------------------------

    def forward_from(self, ids, d, p0, keep, cache=None):
        """Masked logits (B, t, V) for ids (B, t) at absolute positions p0..p0+t; `cache` is a list
        (one (k, v) or None per layer), extended in place; with a cache p0 must equal its length."""
        t = ids.shape[1]
        end = p0 + t
        assert end <= self.config.total
        if cache is not None:
            if not cache:
                cache.extend([None] * len(self.blocks))
            held = 0 if cache[0] is None else cache[0][0].shape[2]
            assert held == p0, f"KV cache holds {held} positions, the new tokens start at {p0}"
        keys = keep[:, :end].unsqueeze(1).unsqueeze(1)
        masks = {}
        x = self.drop(self.embed(ids, d, p0))
        for i, block in enumerate(self.blocks):
            if block.kind not in masks:
                m = getattr(self, f"attn_mask_{block.kind}_{d}")[p0:end, :end]
                masks[block.kind] = m.unsqueeze(0).unsqueeze(0) & keys
            x = block(x, masks[block.kind], cache, i)
        logits = self.head(self.ln_f(x))
        return logits + getattr(self, f"logit_mask_{d}")[p0:end].unsqueeze(0)

    def loss(self, d, text, codes, return_logits=False):
        """(total, condition, target) for direction d; position s predicts token s+1."""
        c = self.config
        seq = self.sequence(d, text, codes)
        n = seq.shape[1]
        keep = self.key_keep(d, text)
        logits = self.forward_from(seq[:, :n - 1], d, 0, keep)
        text_t = text.masked_fill(text == PAD, -100)
        img_t = codes + c.image_offset
        targets = torch.cat([text_t[:, 1:], img_t], 1) if d == "t2i" else torch.cat([img_t[:, 1:], text_t], 1)
        split = first_target_output(c, d)
        v = c.vocab_size

        def ce(a, b):
            return F.cross_entropy(logits[:, a:b].reshape(-1, v), targets[:, a:b].reshape(-1), ignore_index=-100,
                                   reduction="mean")

        condition = ce(0, split)
        target = ce(split, n - 1)
        w = c.loss_weight
        total = (condition + target * w) / (1.0 + w)
        return (total, condition, target, logits) if return_logits else (total, condition, target)

    # -- sampling (sample.rs) -------------------------------------------------------------------

    def feed_id(self, d, pos, tok):
        c = self.config
        if c.pad_tokens == "unique" and image_index(c, d, pos) is None:
            text_pos = pos if d == "t2i" else pos - c.image_len
            return torch.where(tok == PAD, torch.full_like(tok, c.text_vocab + text_pos), tok)
        return tok

    @torch.no_grad()
    def generate(self, d, cond, temperature=1.0, filter_thres=0.9, top_k=None, top_p=None, use_cache=True,
                 max_new=None):
        """t2i: captions (B, Lt) -> codes (B, Li); i2t: codes (B, Li) -> captions (B, Lt).
        `max_new` (not in Rust; for benchmark warm-ups) stops after that many tokens and returns the
        raw generated vocabulary ids (B, <= max_new)."""
        c = self.config
        b = cond.shape[0]
        off = c.image_offset
        if d == "t2i":
            keep = self.key_keep(d, cond)
            prefix, n_new = self.text_ids(cond, 0), c.image_len
        else:
            cls = torch.full((b, 1), CLS, dtype=torch.long, device=cond.device)
            keep = torch.ones(b, c.total, dtype=torch.bool, device=cond.device)
            prefix, n_new = torch.cat([cond + off, cls], 1), c.text_len - 1
        if max_new is not None:
            n_new = min(n_new, max_new)
        cache = [] if use_cache else None
        seq = prefix
        logits = self.forward_from(prefix, d, 0, keep, cache)
        out = []
        finished = torch.zeros(b, dtype=torch.bool, device=cond.device)
        for i in range(n_new):
            tok = sample_logits(logits[:, -1], temperature, filter_thres, top_k, top_p)
            out.append(tok)
            if d == "i2t":
                finished = finished | (tok == SEP)
                if bool(finished.all()):
                    break
            if i + 1 == n_new:
                break
            pos = seq.shape[1]
            fed = self.feed_id(d, pos, tok).unsqueeze(1)
            seq = torch.cat([seq, fed], 1)
            if use_cache:
                logits = self.forward_from(fed, d, pos, keep, cache)
            else:
                logits = self.forward_from(seq, d, 0, keep, None)
        generated = torch.stack(out, 1)
        if max_new is not None:
            return generated
        if d == "t2i":
            return generated - off
        cls = torch.full((b, 1), CLS, dtype=torch.long, device=cond.device)
        text = torch.cat([cls, generated], 1)
        pad = c.text_len - text.shape[1]
        if pad > 0:
            text = torch.cat([text, torch.full((b, pad), PAD, dtype=torch.long, device=cond.device)], 1)
        sep = (text == SEP).long()
        return text.masked_fill((sep.cumsum(1) - sep) > 0, PAD)


def keep_top_k(logits, k):
    k = min(k, logits.shape[1])
    kth = logits.topk(k, -1, largest=True, sorted=True).values[:, k - 1:k]
    return logits.masked_fill(logits < kth, float("-inf"))


def keep_top_p(logits, p):
    sorted_, order = logits.sort(-1, descending=True)
    probs = sorted_.softmax(-1)
    drop_sorted = (probs.cumsum(-1) - probs) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_logits(logits, temperature=1.0, filter_thres=0.9, top_k=None, top_p=None):
    """Filter (Bi-DALL-E's top_k(thres) keeps max(floor((1-thres) V), 1) of the V logits), then draw."""
    if temperature == 0.0:
        return logits.argmax(-1)
    v = logits.shape[1]
    x = logits / temperature
    if filter_thres is not None:
        x = keep_top_k(x, max(int((1.0 - filter_thres) * v), 1))
    if top_k is not None:
        x = keep_top_k(x, top_k)
    if top_p is not None:
        x = keep_top_p(x, top_p)
    return x.softmax(-1).multinomial(1, replacement=True).squeeze(1)


def decay_groups(model, weight_decay):
    """AdamW groups: weight decay on Linear weights only (biases, LayerNorm, embeddings and position
    tables are not decayed; minGPT's rule)."""
    decay = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# Fixture

FIXTURE_CONFIG = dict(n_layer=4, n_head=2, n_embd=16, head_dim=8, text_vocab=9, text_len=6, image_vocab=7,
                      image_side=3, image_positions="fixed", pad_tokens="unique",
                      attn_types=["full", "axial_row", "axial_col", "conv_like"], conv_kernel=3,
                      segment_embedding=True, loss_weight=7.0, dropout=0.0)
GRAD_PARAMS = ("tok_emb.weight", "blocks.1.attn.qkv.weight", "head.weight")
NEG_INF_STORED_AS = -1e30


def make_fixture(path):
    torch.manual_seed(0)
    model = Biart(BiartConfig(**FIXTURE_CONFIG))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") and any(k in name for k in ("qkv", "proj", "fc")):
                p.normal_(0.0, 0.02)  # Linear biases (zero in Rust's init) made non-zero so they are tested
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(torch.randn_like(m.weight) * 0.1)
                m.bias.normal_(0.0, 0.1)
    model.eval()
    text = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 8, 5, 6, 2]], dtype=torch.long)
    codes = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 0, 1], [6, 5, 4, 3, 2, 1, 0, 6, 6]], dtype=torch.long)

    out = {f"model.{k}": v.detach().clone() for k, v in model.named_parameters()}
    out["image_pos_fixed"] = model.image_pos_fixed.clone()
    out["text"], out["codes"] = text, codes
    grand = 0.0
    for d in DIRECTIONS:
        total, cond, tgt, logits = model.loss(d, text, codes, return_logits=True)
        assert torch.isfinite(logits).sum() == logits.shape[0] * sum(
            (model.config.image_vocab if (s >= first_target_output(model.config, d)) == (d == "t2i")
             else model.config.text_vocab) for s in range(logits.shape[1]))
        lg = logits.detach().clone()
        out[f"logits_{d}"] = torch.where(torch.isfinite(lg), lg, torch.full_like(lg, NEG_INF_STORED_AS))
        out[f"loss_total_{d}"] = total.detach().clone().reshape(())
        out[f"loss_condition_{d}"] = cond.detach().clone().reshape(())
        out[f"loss_target_{d}"] = tgt.detach().clone().reshape(())
        grand = grand + total
    model.zero_grad(set_to_none=True)
    grand.backward()
    params = dict(model.named_parameters())
    for name in GRAD_PARAMS:
        out[f"grad.{name}"] = params[name].grad.detach().clone()
    for k, v in out.items():
        assert v.dtype in (torch.float32, torch.int64), k
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(out, path)
    return model, out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT.safetensors")
    torch.set_num_threads(2)
    _, tensors = make_fixture(sys.argv[1])
    print(f"wrote {len(tensors)} tensors to {sys.argv[1]} (torch {torch.__version__})")
    for k in sorted(tensors):
        v = tensors[k]
        extra = f"  = {v.item():.6f}" if v.dim() == 0 else ""
        print(f"  {k:40s} {str(v.dtype).replace('torch.', ''):8s} {list(v.shape)}{extra}")
