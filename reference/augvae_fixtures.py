"""Parity fixtures for tessera-models' AugVAE (L-Verse's tokenizer, spec §4): AugVAE-ML forward, the
shared EMA codebook update, the loss and two AdamW training steps, and AugVAE-SL (the fine-tune that keeps
one level, with the reference's quantise-every-kept-level behaviour), computed with the UPSTREAM code of
tgisaturday/L-Verse imported from a checkout at the pinned commit (reference/upstream.py checks every
imported file's git blob id):

    tgisaturday/L-Verse @e52ed9ff42f0ae54508d7d9ceb332c0711d7f667

Checkout without history:
    git --git-dir=MIRROR archive e52ed9ff42f0ae54508d7d9ceb332c0711d7f667 | tar -x -C DIR
Run from the repository root with the project's venv (needs einops: `.venv/bin/pip install einops`):
    .venv/bin/python reference/augvae_fixtures.py DIR [OUT_DIR]
OUT_DIR defaults to crates/tessera-models/tests/fixtures.

Upstream files / classes used:
  latent_verse/models/vqvae.py          AugVAE (VQVAE.__init__, quant_weight_share, setup_finetune, encode,
                                        decode, get_codebook_indices, forward, training_step,
                                        configure_optimizers)
  latent_verse/modules/vqvae/vae.py     Encoder, Decoder, ResnetBlock, Downsample, Upsample
  latent_verse/modules/vqvae/quantize.py EMAVectorQuantizer, EmbeddingEMA

How upstream is made importable here (nothing upstream is edited or copied):
  * Stubbed in sys.modules: pytorch_lightning (LightningModule -> an nn.Module whose
    save_hyperparameters keeps the named arguments as `hparams` and whose `log` does nothing;
    utilities.distributed.rank_zero_only -> identity), torchvision (transforms / models, unused),
    requests, tqdm. latent_verse/modules/losses/lpips.py's LPIPS needs ImageNet VGG16 weights that cannot
    be fetched here, so the fixtures use `loss_type = 'mse'` (upstream's `nn.MSELoss()`); the configs'
    `lpips_l2` adds `0.1 * LPIPS` to it, which Tessera's perceptual module supplies (tested elsewhere).
  * Width: upstream's `Normalize` is GroupNorm(32, C), so the smallest upstream AugVAE (hidden_dim 32, the
    inner levels' hard-coded ch_mult [2, 4]) has ~6M parameters. To keep the fixture small, vae.py's
    module-level `Normalize` is replaced, while the models are built, by GroupNorm(g(C), C, eps=1e-6) with
    g(C) = the largest power of two <= 32 dividing C: Tessera's rule for narrow nets, equal to upstream's
    for every C divisible by 32. Everything else is upstream's own code.

Determinism: float32, CPU, fixed seeds. Besides upstream's initialisation, every bias and every GroupNorm
weight gets + 0.1*N(0,1) so that a port which drops or misplaces one fails (per-level pre/post-quant
biases differ, their weights are shared).

Model (both files): AugVAE(hidden_dim 8, ch_mult [1, 2], num_res_blocks 1, attn_resolutions [16, 8, 4],
resolution 32, z_channels 16, codebook_dim 8, num_tokens 32, use_attn False, double_z False,
quant_beta 0.25, decay 0.99, eps 1e-5, loss_type 'mse', lr_decay False, learning_rate 1e-3).

Writes to OUT_DIR:
  augvae_ml.safetensors
      param.<upstream state_dict key> (shared tensors appear under every name, as in upstream's
      state_dict), input (2,3,32,32) in [-1,1);
      eval mode: h.<level> (2,8,r,r) pre-quant outputs, codes (2,336) get_codebook_indices (fine to coarse:
      16x16, 8x8, 4x4), xrec_eval (2,3,32,32) forward, decoded (2,3,32,32) decode(codes, feed_seq=True),
      qloss_eval ();
      training (two steps of training_step + AdamW as configure_optimizers builds it; the EMA codebook moves
      in each forward): step<k>.loss, step<k>.qloss, step<k>.rec (= mse), step<k>.perplexity,
      step1.xrec (2,3,32,32), step1.indices.<level> (flat, level order), step1.state.quantizers.<i>.embedding.*
      (the shared EMA codebook after the first forward), step1.grad.<name> for a few
      parameters, after.<upstream key> every parameter and EMA buffer after the second step.
  augvae_sl.safetensors
      A copy of the ML model (same params as augvae_ml's param.*) after upstream's setup_finetune([8],
      'mse', args): encoders 0-1 and the two finest decoders are kept (renumbered 0-1 by upstream),
      connectors.<i> (fresh, perturbed) are added.
      param.connectors.*, eval: codes (2,64), xrec_eval, decoded; training (one training_step + AdamW):
      step1.loss, step1.qloss (both kept levels' commitments: the reference's behaviour),
      step1.indices.<level> for levels 0 and 1, after.<upstream key>.
"""
import argparse
import copy
import inspect
import os
import sys
import types

import torch
import torch._dynamo  # noqa: F401  (AdamW imports it; it must see the real modules, not the stubs)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import save  # noqa: E402
from upstream import _module  # noqa: E402
from upstream_vqgan_fixtures import argmin_inputs, quiet  # noqa: E402

LV = "l-verse"
LV_COMMIT = "e52ed9ff42f0ae54508d7d9ceb332c0711d7f667"
upstream.COMMITS[LV] = LV_COMMIT
upstream.REPOS[LV] = "tgisaturday/L-Verse"
upstream.BLOBS[LV] = {  # `git ls-tree -r e52ed9f` of every file imported
    "latent_verse/models/vqvae.py": "c08f8fccf9de1a1646e63ed2fd022461634d1af1",
    "latent_verse/modules/losses/lpips.py": "d3b15b0abb23b1a80d626558aa50a30e462edfd0",
    "latent_verse/modules/vqvae/quantize.py": "455897e5aceee151cb6151b2c1e45618303d4e49",
    "latent_verse/modules/vqvae/vae.py": "57cdf54cb70cbcf4f3e26b927402862d885943e8",
    "latent_verse/utils/util.py": "6ea5323a850a47a631c6781f750ed23fb17db5bb",
}

MODELS_DIR = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-models", "tests", "fixtures"))
ARGS = dict(resolution=32, num_tokens=32, attn_resolutions=[16, 8, 4], hidden_dim=8, in_channels=3,
            ch_mult=[1, 2], num_res_blocks=1, dropout=0.0, z_channels=16, double_z=False, use_attn=False,
            codebook_dim=8, quant_beta=0.25, quant_ema_decay=0.99, quant_ema_eps=1e-5, loss_type="mse",
            p_loss_weight=0.1, lr_decay=False, finetune=False, log_images=False, learning_rate=1e-3, batch_size=2)
SL_KEEP = [8]
GRADS = ["pre_quants.0.weight", "pre_quants.1.bias", "post_quants.2.bias", "encoders.0.conv_in.weight",
         "decoders.0.conv_in.weight", "decoders.2.conv_out.bias"]


class LightningStub(torch.nn.Module):
    """pytorch_lightning.LightningModule as far as AugVAE uses it."""

    def save_hyperparameters(self, *names):
        caller = inspect.currentframe().f_back.f_locals
        self._hp = types.SimpleNamespace(**{n: caller[n] for n in names})

    @property
    def hparams(self):
        return self._hp

    def log(self, *args, **kwargs):
        pass


def install_stubs():
    distributed = _module("pytorch_lightning.utilities.distributed", rank_zero_only=lambda fn: fn)
    utilities = _module("pytorch_lightning.utilities", distributed=distributed)
    pl = _module("pytorch_lightning", LightningModule=LightningStub, utilities=utilities)

    class _Unused:
        def __getattr__(self, name):
            raise RuntimeError("torchvision is stubbed out and must not be used by the fixtures")

    stubs = {"pytorch_lightning": pl, "pytorch_lightning.utilities": utilities,
             "pytorch_lightning.utilities.distributed": distributed,
             "torchvision": _module("torchvision", transforms=_Unused(), models=_Unused()),
             "torchvision.transforms": _Unused(),
             "requests": _module("requests"), "tqdm": _module("tqdm", tqdm=lambda it=None, *a, **k: it)}
    for name, mod in stubs.items():
        if name in sys.modules and sys.modules[name] is not mod:
            raise SystemExit(f"{name} is already imported; run this script in a fresh interpreter")
        sys.modules[name] = mod


def norm_groups(c):
    g = 32
    while c % g:
        g //= 2
    return g


def perturb(module, gen):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=gen))
        seen = set()
        for name, p in module.named_parameters():
            if p.requires_grad and name.endswith("bias") and id(p) not in seen:
                seen.add(id(p))
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def state(module, prefix):
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()}


def gap(dists):
    g = float("inf")
    for d in dists:
        top2 = d.topk(2, dim=1, largest=False).values
        g = min(g, (top2[:, 1] - top2[:, 0]).min().item())
    return g


def pre_quant_outputs(model):
    seen, handles = [], []
    for pq in model.pre_quants:
        handles.append(pq.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone())))
    return seen, handles


def train_steps(model, x, n, out, grads=()):
    opt = model.configure_optimizers()[0][0]
    model.train()
    dists = []
    for k in range(1, n + 1):
        opt.zero_grad()
        with argmin_inputs() as seen:
            loss = model.training_step((x,), 0)
        dists += seen
        loss.backward()
        out[f"step{k}.loss"] = loss.detach().clone()
        if k == 1:
            for name in grads:
                out[f"step1.grad.{name}"] = dict(model.named_parameters(remove_duplicate=False))[name].grad.clone()
        opt.step()
    out.update(state(model, "after."))
    return dists


def record_step1(model, x, out):
    """The first training forward, recorded piece by piece (then undone by the caller's copy)."""
    m = copy.deepcopy(model)
    m.train()
    quants, qloss, info = m.encode(x)
    xrec = m.decode(quants)
    out["step1.qloss"] = qloss.detach().clone()
    out["step1.rec"] = torch.nn.functional.mse_loss(xrec, x).detach()
    out["step1.perplexity"] = info[0].detach().clone()
    out["step1.xrec"] = xrec.detach().clone()
    for i, idx in enumerate(info[2]):
        out[f"step1.indices.{i}"] = idx.detach().clone()
    out.update({k: v for k, v in state(m, "step1.state.").items() if ".embedding." in k})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of tgisaturday/L-Verse @{LV_COMMIT}")
    ap.add_argument("out", nargs="?", default=MODELS_DIR, help="output directory")
    a = ap.parse_args()

    install_stubs()
    (vqvae, vae) = upstream.load(a.upstream, LV, "latent_verse.models.vqvae", "latent_verse.modules.vqvae.vae")
    vae.Normalize = lambda c: torch.nn.GroupNorm(norm_groups(c), c, eps=1e-6, affine=True)

    torch.manual_seed(0)
    args = types.SimpleNamespace(**ARGS)
    model = quiet(vqvae.AugVAE, args, args.batch_size, args.learning_rate)
    gen = torch.Generator().manual_seed(1)
    perturb(model, gen)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    sl_base = copy.deepcopy(model)

    ml = state(model, "param.")
    ml["input"] = x
    model.eval()
    seen, handles = pre_quant_outputs(model)
    with torch.no_grad(), argmin_inputs() as dists:
        codes = model.get_codebook_indices(x)
        xrec, qloss, _ = model(x)
        decoded = model.decode(codes, feed_seq=True)
    for h in handles:
        h.remove()
    for i, r in enumerate(args.attn_resolutions):
        ml[f"h.{i}"] = seen[i]
    ml.update({"codes": codes, "xrec_eval": xrec, "decoded": decoded, "qloss_eval": qloss})
    record_step1(model, x, ml)
    dists += train_steps(model, x, 2, ml, GRADS)
    ml_gap, ml_used = gap(dists), int(codes.unique().numel())

    # AugVAE-SL as train_vae.py --finetune builds it: the ML model, then setup_finetune.
    torch.manual_seed(2)
    sl_args = types.SimpleNamespace(**{**ARGS, "attn_resolutions": SL_KEEP, "learning_rate": 1e-3})
    model = sl_base
    quiet(model.setup_finetune, SL_KEEP, "mse", sl_args)
    perturb(model.connectors, gen)
    sl = state(model.connectors, "param.connectors.")
    model.eval()
    with torch.no_grad(), argmin_inputs() as dists:
        codes = model.get_codebook_indices(x)
        xrec, qloss, _ = model(x)
        decoded = model.decode(codes, feed_seq=True)
    sl.update({"codes": codes, "xrec_eval": xrec, "decoded": decoded, "qloss_eval": qloss})
    record_step1(model, x, sl)
    dists += train_steps(model, x, 1, sl)
    sl_gap = gap(dists)

    os.makedirs(a.out, exist_ok=True)
    for name, out, what in [("augvae_ml", ml, f"AugVAE-ML, {n_params} parameters, {ml_used} codes used"),
                            ("augvae_sl", sl, "AugVAE-SL (setup_finetune([8]))")]:
        path = os.path.join(a.out, f"{name}.safetensors")
        save(out, path)
        print(f"wrote {len(out)} tensors, {os.path.getsize(path)} bytes to {os.path.normpath(path)} ({what} of "
              f"{upstream.cite(LV, 'latent_verse/models/vqvae.py')}, torch {torch.__version__})")
    print(f"min top-2 distance gap: ML {ml_gap:.3e}, SL {sl_gap:.3e}")


if __name__ == "__main__":
    main()
