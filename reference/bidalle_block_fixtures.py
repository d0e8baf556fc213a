"""Fixture for Tessera's Bi-DALL-E-style BiART blocks, produced by the UPSTREAM modules.

Runs the `Transformer` of Bi-directional DALL-E (github wcshin-git/Bidirectional_DALLE, file
dalle_pytorch/transformer.py with attention.py and execute_type.py; read at commit
2f16503fdeb9a245c1cf9cd2a23466fc6953ecb5) on a fixed input and stores its weights, under Tessera's
parameter names, with the input and the output. The Rust test crates/tessera-models/tests/
bidalle_block_fixture.rs loads the weights into a `Biart` with feed_forward = "geglu",
layer_scale = true, qkv_bias = false, dropout_sites = "dalle" and compares `Biart::blocks_forward`.

Usage (from the repository root, with the project's venv; einops must be installed):
    git --git-dir=<mirror of wcshin-git/Bidirectional_DALLE> archive 2f16503 dalle_pytorch | tar -x -C /tmp/bd
    .venv/bin/python reference/bidalle_block_fixtures.py /tmp/bd \\
        crates/tessera-models/tests/fixtures/bidalle_block.safetensors

Only the three module files are imported: a bare `dalle_pytorch` package object is put in
sys.modules so that its __init__ (which needs the VAE, taming, tokenizers, ...) is not run.

Upstream model: Transformer(dim=16, depth=4, seq_len=31, causal=True, heads=2, dim_head=8,
ff_mult=4, attn_dropout=0, ff_dropout=0, attn_types=(full, axial_row, axial_col, conv_like),
image_fmap_size=5): text_len 6, image 5x5, conv kernel 5 (upstream's fixed default). Seed 0; Linear
weights and biases keep PyTorch's default init (all non-zero); LayerNorm weights 1 + N(0, 0.1),
biases N(0, 0.1); LayerScale scales U(0.25, 1) per channel (upstream starts them at 0.1; random here
so that a per-channel mix-up shows). Evaluation mode, no grad.

Name map (upstream state_dict -> Tessera VarStore; i = layer):
    layers.layers.{i}.0.scale (1,1,C)           -> blocks.{i}.ls1 (C,)
    layers.layers.{i}.0.fn.norm.{weight,bias}    -> blocks.{i}.ln1.{weight,bias}
    layers.layers.{i}.0.fn.fn.to_qkv.weight      -> blocks.{i}.attn.qkv.weight   (no bias)
    layers.layers.{i}.0.fn.fn.to_out.0.{w,b}     -> blocks.{i}.attn.proj.{weight,bias}
    layers.layers.{i}.1.scale (1,1,C)           -> blocks.{i}.ls2 (C,)
    layers.layers.{i}.1.fn.norm.{weight,bias}    -> blocks.{i}.ln2.{weight,bias}
    layers.layers.{i}.1.fn.fn.net.0.{w,b}        -> blocks.{i}.mlp.fc.{weight,bias}  (2*4*C, C)
    layers.layers.{i}.1.fn.fn.net.3.{w,b}        -> blocks.{i}.mlp.proj.{weight,bias} (C, 4*C)

Tensors written (float32 unless noted):
    model.blocks.*            every block parameter above
    text                      (2, 6) int64 raw text ids, [PAD] = 0 at the end of each row
    x_{d}                     (2, 31, 16) input hidden states, d in {t2i, i2t}
    out_{d}                   (2, 31, 16) Transformer(x_d, mask=keep_d, task=d), keep_t2i =
                              cat(text != 0, ones), keep_i2t = cat(ones, text != 0)
    layer_scale_layers        (6,) int64 the `depth` argument given to upstream LayerScale
    layer_scale_init          (6,) the initial scale upstream gives for each
In i2t upstream's sparse layers do not mask [PAD] keys (spec §13.4) while Tessera does, so out_i2t
rows at [PAD] positions differ by design; every other row must match.
"""
import os
import sys
import types

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save  # noqa: E402

DIM, DEPTH, HEADS, DIM_HEAD, TEXT_LEN, SIDE = 16, 4, 2, 8, 6, 5
SEQ_LEN = TEXT_LEN + SIDE * SIDE
ATTN_TYPES = ("full", "axial_row", "axial_col", "conv_like")
TEXT = [[1, 5, 7, 2, 0, 0], [1, 4, 6, 8, 2, 0]]


def import_upstream(root):
    pkg = types.ModuleType("dalle_pytorch")
    pkg.__path__ = [os.path.join(root, "dalle_pytorch")]
    sys.modules["dalle_pytorch"] = pkg
    from dalle_pytorch import transformer  # noqa: E402

    return transformer


def tessera_name(name):
    parts = name.split(".")
    assert parts[:2] == ["layers", "layers"], name
    i, branch, rest = parts[2], parts[3], ".".join(parts[4:])
    table = {
        ("0", "scale"): "ls1",
        ("0", "fn.norm.weight"): "ln1.weight",
        ("0", "fn.norm.bias"): "ln1.bias",
        ("0", "fn.fn.to_qkv.weight"): "attn.qkv.weight",
        ("0", "fn.fn.to_out.0.weight"): "attn.proj.weight",
        ("0", "fn.fn.to_out.0.bias"): "attn.proj.bias",
        ("1", "scale"): "ls2",
        ("1", "fn.norm.weight"): "ln2.weight",
        ("1", "fn.norm.bias"): "ln2.bias",
        ("1", "fn.fn.net.0.weight"): "mlp.fc.weight",
        ("1", "fn.fn.net.0.bias"): "mlp.fc.bias",
        ("1", "fn.fn.net.3.weight"): "mlp.proj.weight",
        ("1", "fn.fn.net.3.bias"): "mlp.proj.bias",
    }
    return f"blocks.{i}.{table[(branch, rest)]}"


def make_fixture(root, out):
    tr = import_upstream(root)
    torch.manual_seed(0)
    model = tr.Transformer(
        dim=DIM, depth=DEPTH, seq_len=SEQ_LEN, causal=True, heads=HEADS, dim_head=DIM_HEAD, ff_mult=4,
        attn_dropout=0.0, ff_dropout=0.0, attn_types=ATTN_TYPES, image_fmap_size=SIDE,
    ).eval()
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.uniform_(0.25, 1.0)
            elif ".norm." in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            value = p.reshape(DIM) if name.endswith(".scale") else p
            tensors[f"model.{tessera_name(name)}"] = value.detach().clone().float()
        text = torch.tensor(TEXT, dtype=torch.int64)
        tensors["text"] = text
        ones = torch.ones(2, SIDE * SIDE, dtype=torch.bool)
        for d in ("t2i", "i2t"):
            keep = torch.cat((text != 0, ones), 1) if d == "t2i" else torch.cat((ones, text != 0), 1)
            x = torch.randn(2, SEQ_LEN, DIM)
            tensors[f"x_{d}"] = x
            tensors[f"out_{d}"] = model(x, mask=keep, task=d).float()
        layers = [1, 18, 19, 24, 25, 40]
        tensors["layer_scale_layers"] = torch.tensor(layers, dtype=torch.int64)
        tensors["layer_scale_init"] = torch.stack(
            [tr.LayerScale(1, depth, nn.Identity()).scale.reshape(()) for depth in layers]
        ).float()
    save(tensors, out)
    return tensors


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} UPSTREAM_CHECKOUT OUT.safetensors")
    t = make_fixture(sys.argv[1], sys.argv[2])
    print(f"wrote {len(t)} tensors to {sys.argv[2]} (torch {torch.__version__})")
