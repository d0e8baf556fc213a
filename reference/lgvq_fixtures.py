"""Parity fixture for tessera-models' LG-VQ auxiliary losses (spec §5.3-5.4, §13 item 6): the vision-side
quantTransformer, the masked text decoder, MlmLayer, wrsLayer and the three losses L_gsa / L_mtp / L_ras with
their gradients w.r.t. the straight-through `quant`, computed with the UPSTREAM code of
623851394/LG-VQ-language-guided-codebook-learning imported from a checkout at the pinned commit
(reference/upstream.py checks every imported file's git blob id):

    623851394/LG-VQ-language-guided-codebook-learning @42c3ff1613e554c5cffb91a5c491f7b454cf3d7f

Checkout without history:
    git --git-dir=MIRROR archive 42c3ff1613e554c5cffb91a5c491f7b454cf3d7f | tar -x -C DIR
Run from the repository root with the project's venv (numpy and einops are imported by upstream files):
    .venv/bin/python reference/lgvq_fixtures.py DIR [--out-dir crates/tessera-models/tests/fixtures]

Upstream code used (nothing is copied or re-implemented, except the two lines creating
mask_learned_parameter, LG_vqgan.py:136-138, which live inside VQModel.__init__):
  taming/clip/model.py                       quantTransformer (+ Transformer, ResidualAttentionBlock,
                                             LayerNorm, QuickGELU; attention = torch nn.MultiheadAttention)
  taming/modules/transformer/maskTransformer.py  maskTransformer (quantTransformer encoder + Decoder)
  taming/modules/transformer/decoder.py      Decoder, DecoderLayer, MultiHeadAttention,
                                             ScaleDotProductAttention, LayerNorm(eps 1e-12),
                                             PositionwiseFeedForward
  taming/models/LG_vqgan.py                  MlmLayer, wrsLayer, LabelSmoothingCrossEntropy and the
                                             VQModel methods text_supervise, maskPrediction, crossEntropy,
                                             global_infor_sup, wrsrelation_sup -- bound, unchanged, to a
                                             minimal host module (`Host`) that carries exactly the
                                             attributes they read (VQModel.__init__ would build a 256x256
                                             VQGAN and load CLIP ViT-B/32 weights).

How upstream is made importable (nothing upstream is edited):
  * taming/clip/__init__.py does `from .clip import *`; clip.py loads ViT-B-32.pt (CLIP weights, absent) and
    needs scipy/ftfy/regex/torchvision at import. It is NOT executed: `taming.clip` is registered as a bare
    package pointing at the checkout's taming/clip directory, and `taming.clip.clip` is a stub whose
    `load` / `tokenize` raise. The frozen CLIP parts the losses touch are stand-ins: a random
    `token_embedding` (vocab 50) and random CLIP-like `all_text_features` / `last_text_feature`.
  * Third-party modules imported but unused: pytorch_lightning (LightningModule -> nn.Module, via
    upstream.install_stubs), torch_geometric (quantize.py's GCN/GAT), matplotlib, sklearn, scipy.io
    (quantize.py -> vis_utils.py).

Determinism: float32, CPU, fixed seeds (the input seed is one whose wrsrelation_sup argmax has a clear
top-1/top-2 margin, printed as "gap"); every module in eval mode (the only dropout sites are in the text
Decoder: dropout1/2/3 of each DecoderLayer and PositionwiseFeedForward.dropout, p = drop_prob = 0.1).
After upstream's initialisation every bias, LayerNorm weight/bias (incl. the decoder's gamma/beta) and
MlmLayer.bias get + 0.1*N(0,1) so that a port which drops or misplaces one fails (upstream inits many of
them to 0/1). Two more departures from upstream's init, for the same reason: wrs.fc.weight gets
+ N(0, 1/C) (at upstream's std 0.01 every row of wrsLayer's output is nearly the same vector, R_c is ~1
everywhere and a wrong code index would go unnoticed) and mask_param gets + 0.5*N(0,1) (at std 0.01 a port
that fed zeros instead of the learned mask vectors would pass). The fixture stores every value used.

Dimensions: B 3, quant C = width 16 on a 4x4 grid (16 codes + class token = 17 vision tokens),
quantTransformer layers 2 heads 1 output_dim 24; Decoder d_model 24, ffn_hidden 24, 2 layers, 1 head,
max_len = T = 8; vocab 50 (SOT 48, EOT 49, pad 0); alpha 0.001, beta 0.01, gamma 0.0001 (cele/textcap configs).
A second model with heads 2 (maskTransformer ties the heads of encoder and decoder) is stored under `h2.`.

Writes OUT_DIR/lgvq_losses.safetensors (metadata: upstream repo/commit, dims, weights, seeds, torch):
  inputs      quant (3,16,4,4) (STE value z + sg[z_q - z]); all_text_features (3,8,24);
              last_text_feature (3,24); text_tokens (3,8) int32; text_mask (3,8) int32 (1 keep, 0 masked or
              pad: upstream's layout); mask_padding (3,8) f32 = (tokens != 0)
  params      quant_tf.<quantTransformer key>, mask_dec.<Decoder key>, mlm.<MlmLayer key>, wrs.<wrsLayer key>,
              mask_param (1,8,24), token_embedding (50,24)
  intermed.   qt_ln_pre (3,17,16), qt_block{0,1} (3,17,16) (NLD), vision_tokens (3,17,24) = V,
              dec_in (3,8,24) (masked + pad-zeroed decoder input), self_attn_mask (3,1,1) (upstream's
              pad "mask"), dec_layer{0,1} (3,8,24), dec_out (3,8,24), mlm_logits (3,8,50),
              mtp_per_position (3,8), mask_pre (3,8), gsa_per_sample (3,), wrs_out (3,16,24),
              ras_sim (3,8,16) and ras_indices (3,8) int64 / ras_values (3,8) (recomputed here with
              upstream's formula, for debugging the argmax), R_t (3,8,8), R_c (3,8,8)
  losses      loss_gsa, loss_mtp, loss_ras, loss_total = a*gsa + b*mtp + g*ras (scalars)
  grads       grad_quant_total, grad_quant_gsa, grad_quant_mtp, grad_quant_ras (3,16,4,4);
              grad.<param name above> of loss_total for every trainable parameter
  h2.*        the same for the heads-2 model (h2.quant_tf.*, h2.mask_dec.*, h2.vision_tokens, h2.dec_out,
              h2.mlm_logits, h2.R_c, h2.loss_*, h2.grad_quant_*); mlm/wrs/mask_param/token_embedding/inputs
              are shared with the main model.
"""
import argparse
import importlib
import json
import math
import os
import struct
import sys

import torch
import torch._dynamo  # noqa: F401  (imported before any stub so it sees the real modules)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import load as st_load  # noqa: E402
from safetensors_io import save as st_save  # noqa: E402
from upstream import _module  # noqa: E402

LG = "lg-vq"
LG_COMMIT = "42c3ff1613e554c5cffb91a5c491f7b454cf3d7f"
upstream.COMMITS[LG] = LG_COMMIT
upstream.REPOS[LG] = "623851394/LG-VQ-language-guided-codebook-learning"
upstream.BLOBS[LG] = {  # `git ls-tree -r 42c3ff1` of every file imported (clip.py: read, cited, not executed)
    "taming/models/LG_vqgan.py": "22bef6807de62392cf3714866076784e1606b12a",
    "taming/clip/model.py": "b4b01fd30d9657a4549887493464828cf10ac949",
    "taming/clip/clip.py": "4f73a62ec282c3fa7b394229843bf71fcf96c120",
    "taming/modules/transformer/maskTransformer.py": "ff033cab6739540bfde67f9e5f869ccb584f9ac8",
    "taming/modules/transformer/decoder.py": "92ddc00e24f58111f51bc43e94a65da90e2a5d76",
    "taming/modules/diffusionmodules/model.py": "d3a5db6aa2ef915e270f1ae135e4a9918fdd884c",
    "taming/modules/vqvae/quantize.py": "804aa871198c77dd101954a7d5f6e8909ed7d8eb",
    "taming/modules/vqvae/vis_utils.py": "2a2946af29925fe870e2294ec6db839fae502ed7",
}

MODELS_DIR = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-models", "tests", "fixtures"))
B, C, GRID, T, D, VOCAB = 3, 16, 4, 8, 24, 50
LAYERS, HEADS, DROP = 2, 1, 0.1
SOT, EOT = 48, 49
ALPHA, BETA, GAMMA = 0.001, 0.01, 0.0001
TOKENS = [[SOT, 5, 17, 33, 9, 21, 40, EOT],  # full length, no padding
          [SOT, 12, 7, 30, EOT, 0, 0, 0],    # 3 pads
          [SOT, 3, 44, 26, 11, EOT, 0, 0]]   # 2 pads
TEXT_MASK = [[1, 0, 1, 1, 0, 1, 1, 1],       # 1 = keep, 0 = masked (pads are 0, as clip.tokenize leaves them)
             [1, 1, 0, 1, 1, 0, 0, 0],
             [1, 0, 1, 0, 1, 1, 0, 0]]
METHODS = ["text_supervise", "maskPrediction", "crossEntropy", "global_infor_sup", "wrsrelation_sup"]


def install_third_party_stubs():
    """Stub the third-party modules LG-VQ's quantize.py (via vis_utils.py) imports but no fixture uses:
    torch_geometric, matplotlib, sklearn, scipy.io; then upstream.install_stubs()."""

    class _Unused:
        def __getattr__(self, name):
            raise RuntimeError("stubbed module: not used by the LG-VQ fixtures")

    pyg_nn = _module("torch_geometric.nn", GCNConv=_Unused, GATConv=_Unused)
    pyg_data = _module("torch_geometric.data", Data=_Unused)
    plt = _module("matplotlib.pyplot")
    sk_manifold = _module("sklearn.manifold", TSNE=_Unused)
    sc_io = _module("scipy.io")
    stubs = {"torch_geometric": _module("torch_geometric", nn=pyg_nn, data=pyg_data),
             "torch_geometric.nn": pyg_nn, "torch_geometric.data": pyg_data,
             "matplotlib": _module("matplotlib", pyplot=plt), "matplotlib.pyplot": plt,
             "sklearn": _module("sklearn", manifold=sk_manifold), "sklearn.manifold": sk_manifold,
             "scipy": _module("scipy", io=sc_io), "scipy.io": sc_io}
    for name, mod in stubs.items():
        if name in sys.modules and sys.modules[name] is not mod:
            raise SystemExit(f"{name} is already imported; run this script in a fresh interpreter")
        sys.modules[name] = mod
    upstream.install_stubs()  # pytorch_lightning, main, torchvision, PIL, tqdm, requests


def load_lgvq(root):
    """upstream.load for this repository, but with taming.clip registered without running its __init__.py
    (which would execute clip.py: CLIP weight loading, tokenizer, scipy/torchvision imports)."""
    root = os.path.abspath(root)
    upstream.check_checkout(root, LG)

    def _no_clip(*a, **k):
        raise RuntimeError("taming.clip.clip is stubbed: no CLIP weights / tokenizer in the fixtures")

    install_third_party_stubs()

    for k in [k for k in sys.modules if k == "taming" or k.startswith("taming.")]:
        del sys.modules[k]
    clip_pkg = _module("taming.clip")
    clip_pkg.__path__ = [os.path.join(root, "taming", "clip")]
    clip_stub = _module("taming.clip.clip", load=_no_clip, tokenize=_no_clip)
    clip_pkg.clip = clip_stub
    sys.modules["taming.clip"] = clip_pkg
    sys.modules["taming.clip.clip"] = clip_stub

    sys.dont_write_bytecode = True  # leave the checkout untouched (it ships cpython-310 .pyc files)
    sys.path.insert(0, root)
    try:
        names = ["taming.models.LG_vqgan", "taming.clip.model", "taming.modules.transformer.maskTransformer",
                 "taming.modules.transformer.decoder"]
        mods = [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(root)
    for m in mods:
        assert os.path.abspath(m.__file__).startswith(root + os.sep), f"{m.__name__} came from {m.__file__}"
    return mods


def make_host(lg):
    """A minimal nn.Module carrying what VQModel's loss methods read; the methods are upstream's own."""

    class Host(torch.nn.Module):
        def __init__(self, msk, mask_param, mlm, wrs, token_embedding):
            super().__init__()
            self.text_dim = D                      # LG_vqgan.py:114 (512 upstream)
            self.mskTransformer = msk              # :124-134
            self.mask_learned_parameter = mask_param  # :136-138
            self.criterion = lg.LabelSmoothingCrossEntropy(smoothing=0.1)  # :139
            self.mseloss = torch.nn.MSELoss()      # :141
            self.wrsr_fc = wrs                     # :142
            self.clip_model = torch.nn.Module()    # :155-157 (frozen CLIP; only token_embedding is read)
            self.clip_model.token_embedding = token_embedding
            self.mlm_layer = mlm                   # :159-160
            self.device = torch.device("cpu")

    for name in METHODS:
        fn = getattr(lg.VQModel, name)
        assert fn.__code__.co_filename == lg.__file__, fn.__code__.co_filename
        setattr(Host, name, fn)
    return Host


def perturb(module, gen):
    """+0.1*N(0,1) on every bias / LayerNorm affine / MlmLayer.bias (upstream inits most to 0 or 1)."""
    with torch.no_grad():
        for mname, m in module.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                is_norm = isinstance(m, torch.nn.LayerNorm) or pname in ("gamma", "beta")
                if pname.endswith("bias") or pname == "beta" or (is_norm and pname in ("weight", "gamma")):
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))


def state(module, prefix):
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()}


def build_mask_transformer(mt, heads, seed):
    torch.manual_seed(seed)
    # LG_vqgan.py:124-134 with grid/width/text_dim shrunk; maskTransformer ties n_layers/n_head of both parts
    return mt.maskTransformer(grid=GRID, width=C, n_layers=LAYERS, n_head=heads, d_model=D, max_len=T,
                              ffn_hidden=D, drop_prob=DROP, device="cpu")


def make_inputs(gen):
    z = torch.randn(B, C, GRID, GRID, generator=gen)
    codebook = torch.randn(256, C, generator=gen)
    zf = z.permute(0, 2, 3, 1).reshape(-1, C)
    idx = torch.cdist(zf, codebook).argmin(1)
    zq = codebook[idx].reshape(B, GRID, GRID, C).permute(0, 3, 1, 2)
    z.requires_grad_(True)
    quant = z + (zq - z).detach()  # straight-through, as VectorQuantizer2 / CVQVectorQuantiser return it
    inp = {
        "all_text_features": torch.randn(B, T, D, generator=gen),
        "last_text_feature": torch.randn(B, D, generator=gen),
        "text_tokens": torch.tensor(TOKENS, dtype=torch.int32),  # clip.tokenize returns int32 (torch >= 1.8)
        "text_mask": torch.tensor(TEXT_MASK, dtype=torch.int32),
    }
    inp["mask_padding"] = (inp["text_tokens"] != 0).float()  # LG_vqgan.py:309
    return z, quant, inp


def run(host, quant, inp, params):
    """Upstream's text_supervise on `quant`; returns recorded tensors (intermediates via hooks)."""
    rec, hooks = {}, []
    msk = host.mskTransformer
    qt, dec = msk.encoder, msk.decoder

    def keep(name, fn=lambda o: o):
        return lambda m, i, o: rec.__setitem__(name, fn(o).detach().clone())

    hooks.append(msk.register_forward_pre_hook(
        lambda m, args: rec.update(dec_in=args[1].detach().clone(), self_attn_mask=args[2].detach().clone())))
    hooks.append(msk.register_forward_hook(
        lambda m, i, o: rec.update(dec_out=o[0].detach().clone(), vision_tokens=o[1].detach().clone())))
    hooks.append(qt.ln_pre.register_forward_hook(keep("qt_ln_pre")))
    for k, blk in enumerate(qt.transformer.resblocks):
        hooks.append(blk.register_forward_hook(keep(f"qt_block{k}", lambda o: o.permute(1, 0, 2))))
    for k, layer in enumerate(dec.layers):
        hooks.append(layer.register_forward_hook(keep(f"dec_layer{k}")))
    hooks.append(host.mlm_layer.register_forward_hook(keep("mlm_logits")))
    hooks.append(host.criterion.register_forward_hook(keep("mtp_per_position", lambda o: o.reshape(B, T))))
    hooks.append(host.wrsr_fc.register_forward_hook(keep("wrs_out")))
    hooks.append(host.mseloss.register_forward_hook(
        lambda m, i, o: rec.update(R_c=i[0].detach().clone(), R_t=i[1].detach().clone())))
    try:
        gsa, mtp, ras = host.text_supervise(quant, inp["all_text_features"], inp["last_text_feature"],
                                            inp["text_mask"], inp["mask_padding"], inp["text_tokens"])
    finally:
        for h in hooks:
            h.remove()
    total = ALPHA * gsa + BETA * mtp + GAMMA * ras
    rec.update(loss_gsa=gsa.detach().clone(), loss_mtp=mtp.detach().clone(), loss_ras=ras.detach().clone(),
               loss_total=total.detach().clone())
    for name, loss in [("gsa", gsa), ("mtp", mtp), ("ras", ras)]:
        rec[f"grad_quant_{name}"] = torch.autograd.grad(loss, quant, retain_graph=True)[0].clone()
    names = list(params)
    grads = torch.autograd.grad(total, [quant] + [params[n] for n in names], allow_unused=True)
    rec["grad_quant_total"] = grads[0].clone()
    for n, g in zip(names, grads[1:]):
        rec[f"grad.{n}"] = g.clone() if g is not None else torch.zeros_like(params[n])
    with torch.no_grad():
        # per-sample L_gsa, upstream's function on the recorded V[:, 0]
        rec["gsa_per_sample"] = host.global_infor_sup(rec["vision_tokens"][:, 0], inp["last_text_feature"])
    rec["mask_pre"] = ((~inp["text_mask"].bool()) * inp["mask_padding"].bool()).float()  # LG_vqgan.py:221-222
    # diagnostic only: the similarity whose row-argmax picks P_i in wrsrelation_sup (LG_vqgan.py:261-266)
    t = inp["all_text_features"] / inp["all_text_features"].norm(dim=-1, keepdim=True)
    v = rec["vision_tokens"][:, 1:]
    v = v / v.norm(dim=-1, keepdim=True)
    rec["ras_sim"] = t @ v.transpose(1, 2)
    rec["ras_values"], rec["ras_indices"] = rec["ras_sim"].max(-1)
    return rec


def argmax_gap(sim):
    top2 = sim.topk(2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]).min().item()


def trunc_normal_stats(mu=0.5, sigma=0.1, lo=0.1, hi=0.3):
    """Moments of clip.py:221-223's mask ratio X ~ scipy truncnorm(mu 0.5, sigma 0.1) on [0.1, 0.3]."""
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    zmass = cdf(b) - cdf(a)
    mean = mu + sigma * (pdf(a) - pdf(b)) / zmass
    var = sigma ** 2 * (1 + (a * pdf(a) - b * pdf(b)) / zmass - ((pdf(a) - pdf(b)) / zmass) ** 2)
    # median: solve cdf(m) = cdf(a) + zmass/2 by bisection
    target, l, h = cdf(a) + zmass / 2, a, b
    for _ in range(100):
        m = (l + h) / 2
        l, h = (m, h) if cdf(m) < target else (l, m)
    return {"mean": mean, "std": math.sqrt(var), "median": mu + sigma * (l + h) / 2}


def save_with_metadata(tensors, path, meta):
    """safetensors_io.save, then the header gets a standard `__metadata__` (str -> str) entry."""
    st_save(tensors, path)
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}, **header}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(data[8 + n:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of {upstream.REPOS[LG]} @{LG_COMMIT}")
    ap.add_argument("--out-dir", default=MODELS_DIR, help="output directory")
    a = ap.parse_args()

    lg, clip_model, mt, decoder = load_lgvq(a.upstream)
    assert mt.Encoder is clip_model.quantTransformer and mt.Decoder is decoder.Decoder
    Host = make_host(lg)

    # Modules, upstream constructors in VQModel.__init__ order (seed 0).
    msk = build_mask_transformer(mt, HEADS, 0)
    mask_param = torch.nn.Parameter(torch.randn((1, T, D)))  # LG_vqgan.py:136-138
    torch.nn.init.normal_(mask_param, std=0.01)
    wrs = lg.wrsLayer(C, D)                                                  # :142
    mlm = lg.MlmLayer(feat_emb_dim=D, word_emb_dim=D, vocab_size=VOCAB)      # :159-160
    token_embedding = torch.nn.Embedding(VOCAB, D)  # stand-in for frozen CLIP token_embedding (std 0.02 in CLIP)
    torch.nn.init.normal_(token_embedding.weight, std=0.2)
    token_embedding.weight.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    for m in (msk, wrs, mlm):
        perturb(m, gen)
    with torch.no_grad():  # see the module docstring: keep R_c and the mask vector informative
        wrs.fc.weight.add_(torch.randn(wrs.fc.weight.shape, generator=gen) / math.sqrt(C))
        mask_param.add_(0.5 * torch.randn(mask_param.shape, generator=gen))
    msk2 = build_mask_transformer(mt, 2, 3)
    perturb(msk2, gen)

    z, quant, inp = make_inputs(torch.Generator().manual_seed(6))

    out = dict(inp)
    out["quant"] = quant.detach().clone()
    prefixes = {"quant_tf.": msk.encoder, "mask_dec.": msk.decoder, "mlm.": mlm, "wrs.": wrs}
    for p, m in prefixes.items():
        out.update(state(m, p))
    out["mask_param"] = mask_param.detach().clone()
    out["token_embedding"] = token_embedding.weight.detach().clone()

    host = Host(msk, mask_param, mlm, wrs, token_embedding).eval()
    params = {p + k: v for p, m in prefixes.items() for k, v in m.named_parameters()}
    params["mask_param"] = mask_param
    rec = run(host, quant, inp, params)
    out.update(rec)

    host2 = Host(msk2, mask_param, mlm, wrs, token_embedding).eval()
    out.update(state(msk2.encoder, "h2.quant_tf."))
    out.update(state(msk2.decoder, "h2.mask_dec."))
    params2 = {"h2.quant_tf." + k: v for k, v in msk2.encoder.named_parameters()}
    params2.update({"h2.mask_dec." + k: v for k, v in msk2.decoder.named_parameters()})
    rec2 = run(host2, quant, inp, params2)
    for k in ["vision_tokens", "dec_out", "mlm_logits", "R_c", "loss_gsa", "loss_mtp", "loss_ras", "loss_total",
              "grad_quant_gsa", "grad_quant_mtp", "grad_quant_ras", "grad_quant_total", "ras_indices"]:
        out["h2." + k] = rec2[k]
    out.update({k: v for k, v in rec2.items() if k.startswith("grad.h2.")})

    # Checks: linearity of the grads, STE (grad w.r.t. z == grad w.r.t. quant), no train-mode dropout.
    for r in (rec, rec2):
        lin = ALPHA * r["grad_quant_gsa"] + BETA * r["grad_quant_mtp"] + GAMMA * r["grad_quant_ras"]
        tol = 1e-5 * r["grad_quant_total"].abs().max().item()
        assert torch.allclose(lin, r["grad_quant_total"], rtol=1e-4, atol=tol)
    assert torch.isfinite(torch.stack([rec[k] for k in ("loss_gsa", "loss_mtp", "loss_ras")])).all()
    again = run(host, quant, inp, params)
    assert torch.equal(again["loss_total"], rec["loss_total"]), "eval forward is not deterministic"
    gsa, mtp, ras = host.text_supervise(quant, inp["all_text_features"], inp["last_text_feature"],
                                        inp["text_mask"], inp["mask_padding"], inp["text_tokens"])
    gz = torch.autograd.grad(ALPHA * gsa + BETA * mtp + GAMMA * ras, z)[0]
    assert torch.allclose(gz, rec["grad_quant_total"]), "STE: grad w.r.t. z differs from grad w.r.t. quant"

    stats = trunc_normal_stats()
    dims = dict(B=B, C=C, grid=GRID, n_codes=GRID * GRID, vision_tokens=GRID * GRID + 1, width=C, layers=LAYERS,
                heads=HEADS, heads_h2=2, output_dim=D, d_model=D, ffn_hidden=D, T=T, vocab=VOCAB, sot=SOT,
                eot=EOT, drop_prob=DROP, label_smoothing=0.1)
    meta = {
        "upstream_repo": upstream.REPOS[LG], "upstream_commit": LG_COMMIT, "dims": json.dumps(dims),
        "alpha": ALPHA, "beta": BETA, "gamma": GAMMA, "mode": "eval (decoder dropout off)",
        "seeds": "modules torch.manual_seed(0) (h2: 3); perturbation Generator(1); inputs Generator(6)",
        "perturbation": "+0.1*N(0,1) on every bias, LayerNorm weight/bias, decoder gamma/beta, MlmLayer.bias; "
                        "wrs.fc.weight + N(0,1/C); mask_param + 0.5*N(0,1)",
        "text_mask": "fixed (upstream draws X~truncnorm(0.5,0.1,[0.1,0.3]) per batch and keeps tokens w.p. 1-X)",
        "mask_ratio_trunc_normal": json.dumps(stats), "torch": torch.__version__,
        "script": "reference/lgvq_fixtures.py",
    }
    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, "lgvq_losses.safetensors")
    save_with_metadata(out, path, meta)
    back = st_load(path)
    assert set(back) == set(out) and all(torch.equal(back[k], out[k].detach().cpu()) for k in out)

    n1 = sum(p.numel() for p in params.values())
    print(f"wrote {len(out)} tensors, {os.path.getsize(path)} bytes to {os.path.normpath(path)} "
          f"({upstream.cite(LG, 'taming/models/LG_vqgan.py')}, torch {torch.__version__}, {n1} params)")
    for name in METHODS:
        fn = getattr(lg.VQModel, name)
        print(f"  upstream {name}: LG_vqgan.py:{fn.__code__.co_firstlineno}")
    print(f"L_gsa {rec['loss_gsa'].item():.6f}  L_mtp {rec['loss_mtp'].item():.6f}  "
          f"L_ras {rec['loss_ras'].item():.6e}  total {rec['loss_total'].item():.6e}")
    print(f"h2: L_gsa {rec2['loss_gsa'].item():.6f}  L_mtp {rec2['loss_mtp'].item():.6f}  "
          f"L_ras {rec2['loss_ras'].item():.6e}")
    print(f"|grad_quant_total| max {rec['grad_quant_total'].abs().max().item():.3e}; "
          f"gsa {rec['grad_quant_gsa'].abs().max().item():.3e}, mtp {rec['grad_quant_mtp'].abs().max().item():.3e},"
          f" ras {rec['grad_quant_ras'].abs().max().item():.3e}")
    print(f"wrs argmax min top-2 gap: {argmax_gap(rec['ras_sim']):.3e} (h2 {argmax_gap(rec2['ras_sim']):.3e}); "
          f"self_attn_mask {rec['self_attn_mask'].flatten().tolist()}")
    print(f"mask ratio X ~ truncnorm(0.5, 0.1, [0.1, 0.3]): {stats}")


if __name__ == "__main__":
    main()
