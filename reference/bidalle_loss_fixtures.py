"""Fixture for BiART's logits, logit masks and losses, produced by the UPSTREAM Bi-directional DALL-E.

Runs `DALLE.forward` of Bi-directional DALL-E (github wcshin-git/Bidirectional_DALLE, file
dalle_pytorch/dalle_pytorch.py with transformer.py, attention.py and execute_type.py; read at commit
2f16503fdeb9a245c1cf9cd2a23466fc6953ecb5) in both tasks, with and without `return_loss`, and stores its
weights under Tessera's parameter names with the inputs, the masked logits, the logit masks and the
loss parts. The Rust test crates/tessera-models/tests/bidalle_loss_fixture.rs loads the weights into a
`Biart` with Bi-DALL-E's options (segment_embedding = false, pad_tokens = "unique",
image_positions = "learned", GEGLU, LayerScale, no qkv bias, head bias) and compares.

Usage (from the repository root, with the project's venv; einops must be installed):
    git --git-dir=<mirror of wcshin-git/Bidirectional_DALLE> archive 2f16503 dalle_pytorch | tar -x -C /tmp/bd
    .venv/bin/python reference/bidalle_loss_fixtures.py /tmp/bd \\
        crates/tessera-models/tests/fixtures/bidalle_loss.safetensors

Only the four module files are imported, nothing is copied: a bare `dalle_pytorch` package object is put
in sys.modules (its __init__ needs the VAE), and `dalle_pytorch.vae` is replaced by a stub whose
`VQGanVAE` only carries what `DALLE.__init__` reads (num_tokens, image_size, fmap_size). Upstream's
forward calls `.cuda()` on its key-padding masks (dalle_pytorch.py:428, :436); while it runs,
`torch.Tensor.cuda` returns the tensor itself so that it runs on the CPU. The loss parts are local
variables of `forward`: they are recorded by wrapping the `F.cross_entropy` that upstream calls
(t2i calls it for text then image, i2t for image then text).

Upstream model: DALLE(dim=16, num_text_tokens=9, text_seq_len=6, depth=4, heads=2, dim_head=8,
attn_types=(full, axial_row, axial_col, conv_like), loss_weight=7, pe_type='learnable',
special_tok_idx={[PAD]: 0, [CLS]: 1, [SEP]: 2}) on a 5x5 code map of 7 codes; conv kernel 5 (upstream's
fixed default). Vocabulary: 9 text ids, 6 unique pad slots, 7 image codes (22 logits). Seed 0;
embeddings N(0, 1) (upstream's default), Linear layers PyTorch's default init, LayerNorm weights
1 + N(0, 0.1) and biases N(0, 0.1), LayerScale U(0.25, 1) per channel. Evaluation mode, no grad.
`pe_type='learnable'` because Tessera's fixed 2-D sinusoid is upstream's with rows and columns swapped
(see image_pos_fixed below); the learned axial table maps one to one.

Name map (upstream state_dict -> Tessera VarStore):
    cat(text_emb.weight, image_emb.weight)   -> tok_emb.weight (9 + 6 + 7, 16)
    text_pos_emb.weight                      -> text_pos_emb (6, 16)
    image_pos_emb.weights_0 (1,5,1,16)       -> image_pos_row (5, 16)
    image_pos_emb.weights_1 (1,1,5,16)       -> image_pos_col (5, 16)
    transformer.layers.*                     -> blocks.* (as reference/bidalle_block_fixtures.py)
    to_logits.0.{weight,bias}                -> ln_f.{weight,bias}
    to_logits.1.{weight,bias}                -> head.{weight,bias}

Tensors written (float32 unless noted; d in {t2i, i2t}; L = 31, V = 22):
    model.*                   every parameter above
    text                      (3, 6) int64 raw text ids, [PAD] = 0 at the end of rows 0 and 1
    codes                     (3, 25) int64 code indices
    allowed_{d}               (L, V) uint8 upstream's logits_mask_{d} buffer
    logits_{d}                (3, L, V) forward(text, codes, text_mask=text != [PAD], task=d), masked
                              entries -finfo(float32).max
    loss_{d}, loss_text_{d}, loss_img_{d}   () forward(..., return_loss=True): the total and the two
                              cross-entropies it is made of
    strict_loss_{d}, strict_loss_text_{d}, strict_loss_img_{d}   () the same forward after the unique
                              pad slots (ids 9..14) were removed from the allowed text logits in the
                              logits_mask_{d} buffer: upstream's loss under Tessera's logit mask
    image_pos_fixed           (25, 16) upstream's FixedPositionalEmbedding2D(16, (5, 5)).emb
"""
import os
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bidalle_block_fixtures import tessera_name  # noqa: E402
from safetensors_io import save  # noqa: E402

DIM, DEPTH, HEADS, DIM_HEAD = 16, 4, 2, 8
TEXT_VOCAB, TEXT_LEN, IMAGE_VOCAB, SIDE = 9, 6, 7, 5
ATTN_TYPES = ("full", "axial_row", "axial_col", "conv_like")
SPECIAL = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}
TEXT = [[1, 5, 7, 2, 0, 0], [1, 4, 6, 8, 2, 0], [1, 3, 8, 4, 5, 2]]


class StubVQGanVAE(nn.Module):
    """What DALLE.__init__ reads from its VAE (dalle_pytorch.py:185-192), nothing else."""

    def __init__(self, num_tokens, fmap_size):
        super().__init__()
        self.num_tokens = num_tokens
        self.fmap_size = fmap_size
        self.num_layers = 0
        self.image_size = fmap_size


def import_upstream(root):
    pkg = types.ModuleType("dalle_pytorch")
    pkg.__path__ = [os.path.join(root, "dalle_pytorch")]
    sys.modules["dalle_pytorch"] = pkg
    vae = types.ModuleType("dalle_pytorch.vae")
    vae.VQGanVAE = StubVQGanVAE
    sys.modules["dalle_pytorch.vae"] = vae
    from dalle_pytorch import dalle_pytorch  # noqa: E402

    return dalle_pytorch


class CrossEntropyRecorder(types.ModuleType):
    """torch.nn.functional with `cross_entropy` recording each result, put in place of upstream's `F`."""

    def __init__(self):
        super().__init__("F_recorder")
        self.calls = []

    def __getattr__(self, name):
        return getattr(F, name)

    def cross_entropy(self, *args, **kwargs):
        out = F.cross_entropy(*args, **kwargs)
        self.calls.append(out)
        return out


def run(dp, model, text, codes, task, return_loss):
    """Upstream's forward on the CPU; with return_loss, (total, {text, img})."""
    recorder = CrossEntropyRecorder()
    cuda, upstream_f = torch.Tensor.cuda, dp.F
    torch.Tensor.cuda = lambda self, *a, **k: self
    dp.F = recorder
    try:
        out = model(text, codes, text_mask=text != SPECIAL["[PAD]"], return_loss=return_loss, task=task)
    finally:
        torch.Tensor.cuda, dp.F = cuda, upstream_f
    if not return_loss:
        return out
    assert len(recorder.calls) == 2, recorder.calls
    first, second = recorder.calls
    parts = {"text": first, "img": second} if task == "t2i" else {"img": first, "text": second}
    return out, parts


def tessera_params(model):
    sd = dict(model.named_parameters())
    out = {
        "tok_emb.weight": torch.cat((sd.pop("text_emb.weight"), sd.pop("image_emb.weight")), 0),
        "text_pos_emb": sd.pop("text_pos_emb.weight"),
        "image_pos_row": sd.pop("image_pos_emb.weights_0").reshape(SIDE, DIM),
        "image_pos_col": sd.pop("image_pos_emb.weights_1").reshape(SIDE, DIM),
        "ln_f.weight": sd.pop("to_logits.0.weight"),
        "ln_f.bias": sd.pop("to_logits.0.bias"),
        "head.weight": sd.pop("to_logits.1.weight"),
        "head.bias": sd.pop("to_logits.1.bias"),
    }
    for name in list(sd):
        assert name.startswith("transformer."), name
        p = sd.pop(name)
        out[tessera_name(name[len("transformer."):])] = p.reshape(DIM) if name.endswith(".scale") else p
    return {f"model.{k}": v.detach().clone().float() for k, v in out.items()}


def make_fixture(root, out):
    dp = import_upstream(root)
    torch.manual_seed(0)
    model = dp.DALLE(
        dim=DIM, vae=StubVQGanVAE(IMAGE_VOCAB, SIDE), num_text_tokens=TEXT_VOCAB, text_seq_len=TEXT_LEN,
        depth=DEPTH, heads=HEADS, dim_head=DIM_HEAD, attn_dropout=0.0, ff_dropout=0.0, attn_types=ATTN_TYPES,
        loss_weight=7, pe_type="learnable", special_tok_idx=SPECIAL,
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.uniform_(0.25, 1.0)
            elif ".norm." in name or name.startswith("to_logits.0."):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
        tensors = tessera_params(model)
        text = torch.tensor(TEXT, dtype=torch.int64)
        codes = torch.randint(0, IMAGE_VOCAB, (len(TEXT), SIDE * SIDE), dtype=torch.int64)
        tensors["text"], tensors["codes"] = text, codes
        for d in ("t2i", "i2t"):
            mask = getattr(model, f"logits_mask_{d}")
            tensors[f"allowed_{d}"] = mask[0].to(torch.uint8).clone()
            tensors[f"logits_{d}"] = run(dp, model, text, codes, d, False).float()
            loss, parts = run(dp, model, text, codes, d, True)
            tensors[f"loss_{d}"] = loss.float()
            for k, v in parts.items():
                tensors[f"loss_{k}_{d}"] = v.float()
        # Upstream's own loss code under Tessera's logit mask: the text rows no longer allow the
        # unique pad slots (ids TEXT_VOCAB..TEXT_VOCAB+TEXT_LEN).
        for d in ("t2i", "i2t"):
            mask = getattr(model, f"logits_mask_{d}")
            mask[..., TEXT_VOCAB:TEXT_VOCAB + TEXT_LEN] = False
            loss, parts = run(dp, model, text, codes, d, True)
            tensors[f"strict_loss_{d}"] = loss.float()
            for k, v in parts.items():
                tensors[f"strict_loss_{k}_{d}"] = v.float()
        tensors["image_pos_fixed"] = dp.FixedPositionalEmbedding2D(DIM, (SIDE, SIDE)).emb.float().clone()
    save(tensors, out)
    return tensors


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} UPSTREAM_CHECKOUT OUT.safetensors")
    t = make_fixture(sys.argv[1], sys.argv[2])
    print(f"wrote {len(t)} tensors to {sys.argv[2]} (torch {torch.__version__})")
    for d in ("t2i", "i2t"):
        for p in ("", "strict_"):
            print(d, p or "upstream", {k or "total": round(float(t[f"{p}loss{k}_{d}"]), 6) for k in ("", "_text", "_img")})
