"""Parity fixture for tessera-models' CLIP text tower as LG-VQ uses it: upstream's own `CLIP` class
(taming/clip/model.py: OpenAI's CLIP with LG-VQ's modified `encode_text` and `build_attention_mask`) of

    623851394/LG-VQ-language-guided-codebook-learning @42c3ff1613e554c5cffb91a5c491f7b454cf3d7f

imported from a checkout by reference/lgvq_fixtures.py's `load_lgvq` (git blob ids checked; taming/clip/
__init__.py and clip.py are NOT executed, so no CLIP weights, tokenizer, scipy or torchvision are needed).
Nothing upstream is copied or edited.

Checkout without history:
    git --git-dir=MIRROR archive 42c3ff1613e554c5cffb91a5c491f7b454cf3d7f | tar -x -C DIR
Run from the repository root with the project's venv (upstream imports numpy and einops):
    .venv/bin/python reference/clip_text_fixtures.py DIR [--out crates/tessera-models/tests/fixtures/clip_text.safetensors]
The torch.save copy of the text-side state_dict goes next to --out as clip_text_state_dict.pth.

Upstream code used (line numbers at the pinned commit, printed again at run time):
  CLIP.__init__ :299-353, initialize_parameters :355-382, build_attention_mask :384-390, dtype :392-394,
  encode_text :399-413; Transformer :195-203, ResidualAttentionBlock :171-192, LayerNorm :157-163,
  QuickGELU :166-168 (x * sigmoid(1.702 x)). Context: clip.py tokenize :201-261, load :95-146;
  LG_vqgan.py get_text_input :304-313 (`clip.tokenize(x, context_length=clip_text_truncate_len)` = 30 in
  every configs_text/*.yaml, then `with torch.no_grad(): clip_model.encode_text(text_tokens)`).

LG-VQ's encode_text, exactly (text: (B, 30) integer ids; the "30" is a literal in model.py):
    x = token_embedding(text).type(dtype)                  # (B, 30, W)
    x = x + positional_embedding[:30].type(dtype)          # positional_embedding is (context_length=77, W); sliced
    x = x.permute(1, 0, 2)                                 # NLD -> LND (nn.MultiheadAttention, batch_first=False)
    x = transformer(x)                                     # resblocks, each: x = x + attn(ln_1(x));
                                                           #              x = x + mlp(ln_2(x)), mlp = c_fc, QuickGELU, c_proj
    x = x.permute(1, 0, 2)                                 # LND -> NLD
    x = ln_final(x).type(dtype)                            # (B, 30, W): all_text_features (UNprojected)
    last = x[arange(B), text.argmax(-1)] @ text_projection # (B, E): EOT row (EOT = largest id) projected
    return x.float(), last.float()
  * Truncation to 30 happens in three places, all hard-coded/configured separately: clip.tokenize pads or cuts
    to context_length=30 (a cut keeps tokens[:30] and overwrites the last one with EOT); encode_text slices the
    positional embedding to its first 30 rows; build_attention_mask returns mask[:30, :30]. Inputs must be
    exactly 30 long (another length fails on the positional add or the 30x30 mask).
  * The causal mask: build_attention_mask() fills an empty (77, 77) float32 tensor with -inf, triu_(1) (keeps
    -inf strictly above the diagonal, 0 on and below), returns the view mask[:30, :30] (non-contiguous slice of a
    77x77 storage). It is built once in CLIP.__init__ and handed to every ResidualAttentionBlock as a plain
    attribute (not a buffer: not in the state_dict). ResidualAttentionBlock.attention re-casts it each call,
    `self.attn_mask = self.attn_mask.to(dtype=x.dtype, device=x.device)`, then
    `self.attn(x, x, x, need_weights=False, attn_mask=self.attn_mask)[0]` with torch's nn.MultiheadAttention
    (batch_first=False, bias=True, dropout 0, packed in_proj_weight (3W, W) rows q|k|v and in_proj_bias (3W,);
    out_proj Linear(W, W)); the additive float mask keeps it off the fast path (and batch_first=False too), so
    it runs F.multi_head_attention_forward: per-head scaled dot product with scale 1/sqrt(W/heads).
    Padding tokens (id 0) are NOT masked: only causality, so rows before EOT never see the padding.
  * dtype: `CLIP.dtype` is visual.conv1.weight.dtype. LG-VQ calls clip.load(..., device=self.device) inside
    VQModel.__init__, where a LightningModule's device is still cpu, so load() calls model.float(): the text
    tower runs in float32 (build_model's convert_weights fp16 cast is undone). The `.type(dtype)` casts are then
    no-ops; LayerNorm (the fp16-safe subclass) computes in float32 and casts back; outputs are `.float()`.
    Tokens from clip.tokenize are int32 (torch >= 1.8); the fixture stores int64 and also checks int32 gives
    bit-identical outputs. No in-place op touches activations (only triu_/fill_ on the mask at construction).
  * build_model(state_dict) would NOT rebuild this fixture's model: it derives transformer_heads =
    transformer_width // 64 (here 24 // 64 = 0) and vision heads = vision_width // 64; so the fixture calls
    CLIP(...) directly with transformer_heads = 2 (ViT-B/32: width 512 -> 8 heads). Vision width is 64, the
    least giving a vision head (unused, not saved).
  * eps of every LayerNorm = 1e-5 (torch default).

Settings: CLIP(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
context_length=77, vocab_size=64, transformer_width=24, transformer_heads=2, transformer_layers=2), built after
torch.manual_seed(0) (its __init__ runs upstream's initialize_parameters: token_embedding N(0, 0.02),
positional N(0, 0.01), in_proj W^-0.5, out_proj/c_proj W^-0.5 (2L)^-0.5, c_fc (2W)^-0.5, text_projection
W^-0.5; biases 0, LayerNorm 1/0 by torch). Then every text-side bias and LayerNorm weight/bias (in_proj_bias,
out_proj.bias, ln_1, c_fc.bias, c_proj.bias, ln_2, ln_final) gets + 0.1*N(0,1) (generator seed 1), in
named_modules order of model.transformer then model.ln_final. float32, CPU, eval mode, torch.no_grad.
Tokens: SOT = 62 (vocab-2), EOT = 63 (vocab-1), content ids in [1, 61] (generator seed 2), zero padding to 30;
row 0 is exactly 30 long (SOT + 28 content + EOT, as a truncated caption), rows 1/2 have 9 and 17 tokens.

Writes OUT (safetensors, metadata: upstream repo/commit, dims, SOT/EOT, names, torch):
  weights.<name>        the 2 + 12*layers + 3 text-side CLIP.state_dict() entries, OpenAI names, state_dict
                        order: positional_embedding (77,24), text_projection (24,16),
                        transformer.resblocks.{i}.attn.in_proj_weight (72,24) / in_proj_bias (72,) /
                        out_proj.weight (24,24) / out_proj.bias (24,), ln_1.weight/bias (24,),
                        mlp.c_fc.weight (96,24) / bias (96,), mlp.c_proj.weight (24,96) / bias (24,),
                        ln_2.weight/bias (24,), token_embedding.weight (64,24), ln_final.weight/bias (24,)
                        (visual.* and logit_scale are left out)
  text                  (3,30) int64
  eot_index             (3,) int64 = text.argmax(-1)
  attn_mask             (30,30) f32, the mask the blocks use (0 / -inf)
  x_after_embed         (3,30,24) token_embedding(text) + positional_embedding[:30] (NLD; the transformer input)
  x_after_block0/1      (3,30,24) output of resblocks.0 / .1 (permuted back to NLD)
  all_text_features     (3,30,24) ln_final output, unprojected (encode_text's first output)
  last_text_feature     (3,16)    EOT row @ text_projection (encode_text's second output)
and, next to OUT, clip_text_state_dict.pth: torch.save of a plain dict {OpenAI name: tensor} with the same
text-side entries (no `weights.` prefix), as a user's state_dict file would hold them.
"""
import argparse
import inspect
import os
import sys

import torch
import torch._dynamo  # noqa: F401  (imported before any stub so it sees the real modules)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from lgvq_fixtures import LG, LG_COMMIT, load_lgvq, perturb, save_with_metadata  # noqa: E402
from safetensors_io import load as st_load  # noqa: E402

OUT = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-models", "tests", "fixtures",
                                    "clip_text.safetensors"))
PTH_NAME = "clip_text_state_dict.pth"
DIMS = dict(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
            context_length=77, vocab_size=64, transformer_width=24, transformer_heads=2, transformer_layers=2)
CTX = 30  # LG-VQ's literal in encode_text / build_attention_mask (= clip_text_truncate_len in configs_text)
SOT, EOT = DIMS["vocab_size"] - 2, DIMS["vocab_size"] - 1
LENGTHS = [30, 9, 17]  # tokens incl. SOT and EOT; row 0 fills the context exactly
SEED_MODEL, SEED_PERTURB, SEED_TOKENS = 0, 1, 2


def make_text():
    gen = torch.Generator().manual_seed(SEED_TOKENS)
    text = torch.zeros(len(LENGTHS), CTX, dtype=torch.int64)
    for i, n in enumerate(LENGTHS):
        content = torch.randint(1, SOT, (n - 2,), generator=gen)  # ids in [1, vocab-3]
        text[i, :n] = torch.cat([torch.tensor([SOT]), content, torch.tensor([EOT])])
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of {upstream.REPOS[LG]} @{LG_COMMIT}")
    ap.add_argument("--out", default=OUT, help="output safetensors file")
    a = ap.parse_args()

    _lg, cm, _mt, _dec = load_lgvq(a.upstream)
    for fn in (cm.CLIP.__init__, cm.CLIP.initialize_parameters, cm.CLIP.build_attention_mask,
               cm.CLIP.encode_text, cm.ResidualAttentionBlock.attention):
        assert fn.__code__.co_filename == cm.__file__, fn.__code__.co_filename
        print(f"  upstream {fn.__qualname__}: model.py:{fn.__code__.co_firstlineno}")

    torch.manual_seed(SEED_MODEL)
    model = cm.CLIP(**DIMS)  # __init__ calls upstream's initialize_parameters()
    gen = torch.Generator().manual_seed(SEED_PERTURB)
    perturb(model.transformer, gen)
    perturb(model.ln_final, gen)
    model.eval()
    assert model.dtype == torch.float32

    sd = model.state_dict()
    names = [k for k in sd if not k.startswith("visual.") and k != "logit_scale"]
    assert len(names) == 2 + 12 * DIMS["transformer_layers"] + 3, names
    weights = {k: sd[k].detach().clone().contiguous() for k in names}

    # the mask every block uses (same object in all blocks, built once in __init__)
    masks = {id(b.attn_mask) for b in model.transformer.resblocks}
    assert len(masks) == 1
    attn_mask = model.transformer.resblocks[0].attn_mask.clone().contiguous()
    assert attn_mask.shape == (CTX, CTX)
    assert torch.equal(torch.isinf(attn_mask), torch.ones(CTX, CTX, dtype=torch.bool).triu(1))
    assert (attn_mask[~torch.isinf(attn_mask)] == 0).all()
    assert all(isinstance(b.attn, torch.nn.MultiheadAttention) and not b.attn.batch_first
               for b in model.transformer.resblocks)

    text = make_text()
    eot_index = text.argmax(dim=-1)
    assert eot_index.tolist() == [n - 1 for n in LENGTHS]

    rec = {}

    def pre_hook(_m, args):
        rec["x_after_embed"] = args[0].permute(1, 0, 2).clone()  # LND -> NLD

    def block_hook(i):
        def h(_m, _args, out):
            rec[f"x_after_block{i}"] = out.permute(1, 0, 2).clone()
        return h

    handles = [model.transformer.register_forward_pre_hook(pre_hook)]
    handles += [b.register_forward_hook(block_hook(i)) for i, b in enumerate(model.transformer.resblocks)]
    with torch.no_grad():
        all_feat, last_feat = model.encode_text(text)
    for h in handles:
        h.remove()
    with torch.no_grad():  # as LG-VQ feeds it: int32 ids from clip.tokenize
        all32, last32 = model.encode_text(text.to(torch.int32))
    assert torch.equal(all32, all_feat) and torch.equal(last32, last_feat)
    assert all_feat.shape == (3, CTX, DIMS["transformer_width"]) and last_feat.shape == (3, DIMS["embed_dim"])
    assert all_feat.dtype == torch.float32 and last_feat.dtype == torch.float32
    # sanity: the projected feature is the EOT row of the first output
    assert torch.allclose(last_feat, all_feat[torch.arange(3), eot_index] @ weights["text_projection"])

    tensors = {f"weights.{k}": v for k, v in weights.items()}
    tensors.update(text=text, eot_index=eot_index, attn_mask=attn_mask, all_text_features=all_feat,
                   last_text_feature=last_feat, **rec)
    meta = {"upstream_repo": upstream.REPOS[LG], "upstream_commit": LG_COMMIT,
            "upstream_file": "taming/clip/model.py (CLIP, encode_text, build_attention_mask)",
            **{k: v for k, v in DIMS.items()}, "text_context": CTX, "sot": SOT, "eot": EOT, "pad": 0,
            "lengths": LENGTHS, "layer_norm_eps": 1e-5,
            "seeds": f"model {SEED_MODEL}, perturb {SEED_PERTURB}, tokens {SEED_TOKENS}",
            "weight_names": ",".join(names), "torch": torch.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_with_metadata(tensors, a.out, meta)
    pth = os.path.join(os.path.dirname(os.path.abspath(a.out)), PTH_NAME)
    torch.save(dict(weights), pth)

    # reload checks
    back = st_load(a.out)
    assert set(back) == set(tensors), set(back) ^ set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    sd_back = torch.load(pth, map_location="cpu", weights_only=True)
    assert type(sd_back) is dict and list(sd_back) == names
    for k in names:
        assert torch.equal(sd_back[k], weights[k]), k
    # the .pth loads into a fresh upstream CLIP (text side) and reproduces encode_text
    torch.manual_seed(123)
    fresh = cm.CLIP(**DIMS).eval()
    missing, unexpected = fresh.load_state_dict(sd_back, strict=False)
    assert not unexpected and all(k.startswith("visual.") or k == "logit_scale" for k in missing), missing
    with torch.no_grad():
        f_all, f_last = fresh.encode_text(text)
    assert torch.equal(f_all, all_feat) and torch.equal(f_last, last_feat)

    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes, {len(tensors)} tensors) and {pth} "
          f"({os.path.getsize(pth)} bytes) ({upstream.cite(LG, 'taming/clip/model.py')}, torch {torch.__version__})")
    for k in names:
        print(f"  {k} {tuple(weights[k].shape)}")
    print(f"text lengths {LENGTHS}, eot_index {eot_index.tolist()}; "
          f"|all_text_features| max {all_feat.abs().max().item():.4f}, "
          f"|last_text_feature| max {last_feat.abs().max().item():.4f}")
    print(f"source of encode_text:\n{inspect.getsource(cm.CLIP.encode_text)}")


if __name__ == "__main__":
    main()
