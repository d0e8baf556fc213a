"""Parity fixtures for tessera-models' ViT-VQGAN (encoder, decoder, l2-normalised quantizer, whole model,
StyleGAN2 discriminator, R1 and GAN losses), computed with the UPSTREAM code of
thuanz123/enhancing-transformers imported from a checkout at the pinned commit
(reference/upstream.py checks every imported file's git blob id; the pins are registered below):

    thuanz123/enhancing-transformers @e1c185da5cc0eeefdded68cbff888d5b9c248372

Checkout without history (only the .py files are needed):
    git --git-dir=MIRROR archive e1c185da5cc0eeefdded68cbff888d5b9c248372 | tar -x -C DIR
Run from the repository root with the project's venv (needs numpy and einops, both pure pip installs:
`.venv/bin/pip install numpy einops`; nothing else):
    .venv/bin/python reference/vitvq_fixtures.py DIR [OUT_DIR]
OUT_DIR defaults to crates/tessera-models/tests/fixtures.

Upstream files / classes used:
  enhancing/modules/stage1/layers.py      ViTEncoder, ViTDecoder (Transformer, PreNorm, Attention,
                                          FeedForward, get_2d_sincos_pos_embed, init_weights)
  enhancing/modules/stage1/quantizers.py  VectorQuantizer (use_norm=True, beta=0.25)
  enhancing/modules/stage1/vitvqgan.py    ViTVQ (encode / decode / forward / encode_codes / decode_codes)
  enhancing/losses/layers.py              StyleDiscriminator (ConvLayer, StyleBlock, Blur, EqualConv2d,
                                          EqualLinear), vanilla_d_loss, hinge_d_loss, least_square_d_loss
  enhancing/losses/vqperceptual.py        VQLPIPSWithDiscriminator.forward (generator and discriminator
                                          passes, R1), DummyLoss (ViTVQ's loss in vit_model)
  enhancing/losses/op/{fused_act,upfirdn2d,conv2d_gradfix}.py  their CPU paths

How upstream is made importable here (nothing upstream is edited or copied):
  * Both op/fused_act.py and op/upfirdn2d.py build CUDA extensions AT IMPORT
    (torch.utils.cpp_extension.load of .cpp/.cu sources; there is no nvcc/CUDA here). Their public
    functions dispatch on input.device.type: on CPU, fused_leaky_relu is
    `F.leaky_relu(x + bias, 0.2) * scale` and upfirdn2d is upstream's `upfirdn2d_native`, and
    conv2d_gradfix falls back to F.conv2d. So `cpp_extension.load` is replaced, while those two modules
    are imported, by a function returning an object that raises if it is ever used; every fixture runs
    on CPU, i.e. through upstream's own pure-PyTorch fallbacks.
  * layers.py's 1-D sin-cos uses `np.float`, removed in numpy 1.24; while upstream constructors run,
    `np.float` is set to the builtin `float` (what it aliased), so the pos-emb is computed in float64
    and cast to float32 by upstream, as with the numpy 1.19 upstream pins.
  * Stubbed in sys.modules (imported by upstream modules, never used by the fixtures):
    pytorch_lightning (LightningModule -> nn.Module; callbacks / loggers / utilities / trainer names
    that enhancing/utils/{general,callback}.py import or name in annotations), omegaconf (type hints
    only; configs are passed as an attribute-dict), wandb, torchvision (transforms / utils / models),
    kornia.filters.filter2d (imported by losses/layers.py, unused), PIL, and lpips: LPIPS needs
    ImageNet VGG16 weights that cannot be fetched here, so `lpips.LPIPS` is a parameter-free module
    returning zeros and the loss is built with perceptual_weight=0 (the perceptual term is absent from
    every loss value in these fixtures).
  * StyleDiscriminator hard-codes its widths (channels[4..32] = 512 whatever channel_multiplier is), so
    a size-32 discriminator has ~20M parameters (~80 MB). It is built by upstream's own __init__ (and
    upstream's VQLPIPSWithDiscriminator.__init__) with the names ConvLayer / EqualLinear of
    losses/layers.py temporarily wrapped to divide every width by DISC_WIDTH_DIV (512 -> 32, the
    stddev-augmented 513 -> 33, the flattened 512*4*4 -> 32*4*4; 3 RGB channels and the 1 logit are
    kept). The script checks the result has exactly the state_dict keys of a full-width
    StyleDiscriminator(size=32) (built too, for that check only) with every width so divided.

Determinism: float32, CPU, fixed seeds per fixture. Besides upstream's initialisation, every bias and
every LayerNorm weight/bias gets + 0.1*N(0,1) (upstream initialises them to 0 / 1) so that a port which
drops or misplaces them fails. The pos-emb parameters are left exactly as upstream computes them.

Writes to OUT_DIR (param.<key> = upstream state_dict key of the module named):
  vit_encoder.safetensors   ViTEncoder(image_size=32, patch_size=8, dim=64, depth=2, heads=2, mlp_dim=128,
                            channels=3, dim_head=32)
      param.*, input (2,3,32,32) in [-1,1), patch_tokens (2,16,64) (after conv+rearrange, before pos-emb),
      pre_norm (2,16,64) (input of transformer.norm), output (2,16,64);
      rect.input (2,3,32,48), rect.pos_embedding (1,24,64), rect.output (2,24,64): the same weights with
      image_size=(32,48) (grid 4x6), whose only new tensor is the pos-emb.
  vit_decoder.safetensors   ViTDecoder(same arguments)
      param.*, input (2,16,64) ~N(0,1), pre_norm (2,16,64), tokens_out (2,16,64) (after transformer.norm),
      output (2,3,32,32); rect.input (2,24,64), rect.pos_embedding (1,24,64), rect.output (2,3,32,48).
  vit_quantizer.safetensors VectorQuantizer(embed_dim=8, n_embed=64, beta=0.25, use_norm=True)
      param.embedding.weight (64,8) raw (unnormalised) codebook, input (2,16,8), indices (2,16) int64,
      zq_norm (2,16,8) (quantize's l2-normalised code), zq (2,16,8) (forward's straight-through
      z + (zq_norm - z)), loss (), dist (2,16,64) (the distance matrix handed to argmin).
  vit_model.safetensors     ViTVQ(image_size=32, patch_size=8, encoder=decoder=dict(dim=64, depth=2, heads=2,
                            mlp_dim=128, dim_head=32), quantizer=dict(embed_dim=8, n_embed=64),
                            loss=DummyLoss)
      param.* (encoder.*, decoder.*, quantizer.embedding.weight, pre_quant.*, post_quant.*),
      input (2,3,32,32) in [0,1), h (2,16,64) encoder out, z (2,16,8) pre_quant out, zq (2,16,8),
      indices (2,16), qloss (), dist (2,16,64), post (2,16,64) post_quant out, xrec (2,3,32,32),
      xrec_codes (2,3,32,32) = decode_codes(indices).
  vit_disc.safetensors      StyleDiscriminator(size=32, channel_multiplier=2, blur_kernel=[1,3,3,1]) with
                            widths / DISC_WIDTH_DIV, inside VQLPIPSWithDiscriminator(disc_params={size: 32},
                            loglaplace_weight=0, loggaussian_weight=1, perceptual_weight=0,
                            adversarial_weight=0.1, disc_loss='vanilla', r1_gamma=10, do_r1_every=16,
                            disc_start=0, codebook_weight=1)
      param.* (discriminator state_dict, incl. the Blur `kernel` buffers), disc_input (8,3,32,32) real
      in [0,1), disc_logits (8,), disc_fake (8,3,32,32) in [0,1), disc_logits_fake (8,),
      disc_input_b6 (6,3,32,32), disc_logits_b6 (6,) (minibatch-stddev group of 6, see notes),
      r1_grad (8,3,32,32) d(sum D(real))/d(real), r1 () = r1_grad.square().sum([1,2,3]).mean(),
      r1_gamma (), r1_every (), d_loss () discriminator pass total = vanilla_d(fake, real) +
      r1_gamma*r1_every*r1/2, d_loss_gan () = vanilla_d(fake, real), codebook_loss () (the value fed in),
      g_total () generator pass total = mse(rec, real) + 0.1*g_loss + codebook_loss, g_loss (),
      rec_loss () (= mse), loss.{vanilla,hinge,lsq}_{g,d} () upstream's three GAN losses on
      disc_logits_fake / disc_logits.
"""
import argparse
import contextlib
import os
import sys
import types

import numpy as np
import torch
import torch.utils.cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import save  # noqa: E402
from upstream_vqgan_fixtures import argmin_inputs, quiet, state_tensors  # noqa: E402

ET = "enhancing"
ET_COMMIT = "e1c185da5cc0eeefdded68cbff888d5b9c248372"
upstream.COMMITS[ET] = ET_COMMIT
upstream.REPOS[ET] = "thuanz123/enhancing-transformers"
upstream.BLOBS[ET] = {  # `git ls-tree -r e1c185d` of every file imported
    "enhancing/__init__.py": "00988a64e035050cdea87dc7cf8cc624fbe5c04f",
    "enhancing/utils/general.py": "ad0965c4a697425ba5aede6ef456fdf07e6b6ec3",
    "enhancing/utils/callback.py": "2beae6cdbeddc3cab4d1a3df092ab625938fb891",
    "enhancing/modules/stage1/layers.py": "e2665dcd28fe4e88c6cd9d8ac6c5a430a213c0a8",
    "enhancing/modules/stage1/quantizers.py": "230d9fcf5c1cfbcb94aa732c143673c8273ce939",
    "enhancing/modules/stage1/vitvqgan.py": "98b3a125751b28343e6c15dcb3637b3fd7610738",
    "enhancing/losses/layers.py": "23b20f6f40cc914ee435d21f6465ac84705ecc46",
    "enhancing/losses/vqperceptual.py": "45349504f43fe2cf976e4be8a22c32af6864f83a",
    "enhancing/losses/op/__init__.py": "d0918d92285955855be89f00096b888ee5597ce3",
    "enhancing/losses/op/fused_act.py": "4f39941f2ce76c474e3914ad1149741b02f24f65",
    "enhancing/losses/op/upfirdn2d.py": "3a12f15b3c2347194e3bf0fdfda736415693775f",
    "enhancing/losses/op/conv2d_gradfix.py": "bb2f94bbcb8132299fd4d538972d32bd7ff6e7d6",
}

MODELS_DIR = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-models", "tests", "fixtures"))
VIT = dict(dim=64, depth=2, heads=2, mlp_dim=128, dim_head=32)
IMAGE, PATCH, RECT = 32, 8, (32, 48)
EMBED_DIM, N_EMBED, BETA = 8, 64, 0.25
DISC_SIZE, DISC_WIDTH_DIV = 32, 16
LOSS_PARAMS = dict(disc_params={"size": DISC_SIZE}, loglaplace_weight=0.0, loggaussian_weight=1.0,
                   perceptual_weight=0.0, adversarial_weight=0.1)  # the rest: upstream defaults


class AttrDict(dict):
    """Stands in for the OmegaConf nodes ViTVQ receives: `**cfg`, `cfg["target"]`, `cfg.get`, `cfg.dim`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


class _ZeroLPIPS(torch.nn.Module):
    """lpips.LPIPS stand-in (no VGG16 weights here): perceptual distance 0; used with perceptual_weight 0."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x, y):
        return x.new_zeros(x.shape[0], 1, 1, 1)


def _unused(what):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{what} is stubbed out and must not be used by the fixtures")
    return fail


def install_stubs():
    """Modules enhancing-transformers imports but the fixtures never use (see the docstring). Installed
    before upstream.install_stubs, which only adds what is still missing."""
    class Anything:
        pass

    callbacks = _module("pytorch_lightning.callbacks", Callback=Anything, ModelCheckpoint=Anything)
    loggers = _module("pytorch_lightning.loggers", WandbLogger=Anything, TestTubeLogger=Anything)
    distributed = _module("pytorch_lightning.utilities.distributed", rank_zero_only=lambda fn: fn)
    utilities = _module("pytorch_lightning.utilities", distributed=distributed)
    trainer = _module("pytorch_lightning.trainer", Trainer=Anything)
    pl = _module("pytorch_lightning", LightningModule=torch.nn.Module, callbacks=callbacks, loggers=loggers,
                 utilities=utilities, trainer=trainer)
    filters = _module("kornia.filters", filter2d=_unused("kornia.filters.filter2d"))

    class _NoVGG:
        def __getattr__(self, name):
            raise RuntimeError("torchvision is stubbed out")

    stubs = {
        "pytorch_lightning": pl, "pytorch_lightning.callbacks": callbacks, "pytorch_lightning.loggers": loggers,
        "pytorch_lightning.utilities": utilities, "pytorch_lightning.utilities.distributed": distributed,
        "pytorch_lightning.trainer": trainer,
        "omegaconf": _module("omegaconf", OmegaConf=AttrDict),
        "wandb": _module("wandb"),
        "torchvision": _module("torchvision", transforms=_module("torchvision.transforms"),
                               utils=_module("torchvision.utils"), models=_NoVGG()),
        "kornia": _module("kornia", filters=filters), "kornia.filters": filters,
        "lpips": _module("lpips", LPIPS=_ZeroLPIPS),
    }
    for name, mod in stubs.items():
        if name in sys.modules and sys.modules[name] is not mod:
            raise SystemExit(f"{name} is already imported; run this script in a fresh interpreter")
        sys.modules[name] = mod


@contextlib.contextmanager
def no_cuda_extensions():
    """fused_act.py / upfirdn2d.py call cpp_extension.load at import; their CPU paths never use it."""
    orig = torch.utils.cpp_extension.load

    class NotBuilt:
        def __init__(self, name):
            self.name = name

        def __getattr__(self, attr):
            raise RuntimeError(f"CUDA extension {self.name!r} is not built (CPU-only fixtures)")

    torch.utils.cpp_extension.load = lambda name, *args, **kwargs: NotBuilt(name)
    try:
        yield
    finally:
        torch.utils.cpp_extension.load = orig


@contextlib.contextmanager
def numpy_float_alias():
    """np.float (removed in numpy 1.24) was the builtin float; upstream's sin-cos pos-emb uses it."""
    had = "float" in np.__dict__
    np.float = float
    try:
        yield
    finally:
        if not had:
            del np.float


@contextlib.contextmanager
def narrow_disc(layers_mod, div):
    """Every width passed to losses/layers.py's ConvLayer / EqualLinear (hence in StyleDiscriminator and
    StyleBlock, which look them up there) divided by `div`; c = div*q + 1 (the minibatch-stddev channel)
    becomes q + 1; widths below `div` (RGB, the single logit) stay."""
    conv, lin = layers_mod.ConvLayer, layers_mod.EqualLinear

    def w(c):
        if c < div:
            return c
        q, r = divmod(c, div)
        assert r in (0, 1), c
        return q + r

    layers_mod.ConvLayer = lambda i, o, *a, **k: conv(w(i), w(o), *a, **k)
    layers_mod.EqualLinear = lambda i, o, *a, **k: lin(w(i), w(o), *a, **k)
    try:
        yield w
    finally:
        layers_mod.ConvLayer, layers_mod.EqualLinear = conv, lin


def perturb(module, gen):
    """+0.1*N(0,1) on every bias and every LayerNorm weight/bias (upstream initialises them to 0 / 1)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=gen))
        for name, p in module.named_parameters():
            if p.requires_grad and name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def capture_input(module):
    """Forward-pre-hook recording the (first) input of `module`; returns (list, handle)."""
    seen = []
    return seen, module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))


def encoder_fixture(L):
    torch.manual_seed(0)
    with numpy_float_alias():
        enc = L.ViTEncoder(image_size=IMAGE, patch_size=PATCH, channels=3, **VIT)
        rect = L.ViTEncoder(image_size=RECT, patch_size=PATCH, channels=3, **VIT)
    perturb(enc, torch.Generator().manual_seed(100))
    sd = dict(enc.state_dict(), en_pos_embedding=rect.en_pos_embedding.detach().clone())
    rect.load_state_dict(sd)
    enc.eval(), rect.eval()
    x = torch.rand(2, 3, IMAGE, IMAGE) * 2 - 1
    xr = torch.rand(2, 3, *RECT) * 2 - 1
    pre, h = capture_input(enc.transformer.norm)
    with torch.no_grad():
        y = enc(x)
        tokens = enc.to_patch_embedding(x)
        yr = rect(xr)
    h.remove()
    out = state_tensors(enc, "param.")
    out.update({"input": x, "patch_tokens": tokens, "pre_norm": pre[0], "output": y, "rect.input": xr,
                "rect.pos_embedding": rect.en_pos_embedding, "rect.output": yr})
    return out


def decoder_fixture(L):
    torch.manual_seed(1)
    with numpy_float_alias():
        dec = L.ViTDecoder(image_size=IMAGE, patch_size=PATCH, channels=3, **VIT)
        rect = L.ViTDecoder(image_size=RECT, patch_size=PATCH, channels=3, **VIT)
    perturb(dec, torch.Generator().manual_seed(101))
    rect.load_state_dict(dict(dec.state_dict(), de_pos_embedding=rect.de_pos_embedding.detach().clone()))
    dec.eval(), rect.eval()
    n = (IMAGE // PATCH) ** 2
    t = torch.randn(2, n, VIT["dim"])
    tr = torch.randn(2, (RECT[0] // PATCH) * (RECT[1] // PATCH), VIT["dim"])
    pre, h1 = capture_input(dec.transformer.norm)
    post, h2 = capture_input(dec.to_pixel)
    with torch.no_grad():
        y = dec(t)
        yr = rect(tr)
    h1.remove(), h2.remove()
    out = state_tensors(dec, "param.")
    out.update({"input": t, "pre_norm": pre[0], "tokens_out": post[0], "output": y, "rect.input": tr,
                "rect.pos_embedding": rect.de_pos_embedding, "rect.output": yr})
    return out


def quantizer_fixture(Q):
    torch.manual_seed(2)
    vq = Q.VectorQuantizer(embed_dim=EMBED_DIM, n_embed=N_EMBED, beta=BETA, use_norm=True)
    z = torch.randn(2, 16, EMBED_DIM)
    with torch.no_grad(), argmin_inputs() as seen:
        zq, loss, idx = vq(z)
        zq_norm, loss2, idx2 = vq.quantize(z)
    assert torch.equal(idx, idx2) and torch.equal(loss, loss2)
    dist = seen[0].reshape(2, 16, N_EMBED)
    assert torch.equal(dist.argmin(-1), idx)
    out = state_tensors(vq, "param.")
    out.update(input=z, indices=idx, zq=zq, zq_norm=zq_norm, loss=loss, dist=dist)
    return out, gap(dist), idx.unique().numel()


def gap(dist):
    top2 = dist.reshape(-1, dist.shape[-1]).topk(2, dim=1, largest=False).values
    return (top2[:, 1] - top2[:, 0]).min().item()


def model_fixture(V):
    torch.manual_seed(3)
    with numpy_float_alias():
        model = quiet(V.ViTVQ, image_key="image", image_size=IMAGE, patch_size=PATCH,
                      encoder=AttrDict(VIT), decoder=AttrDict(VIT),
                      quantizer=AttrDict(embed_dim=EMBED_DIM, n_embed=N_EMBED),
                      loss=AttrDict(target="enhancing.losses.vqperceptual.DummyLoss"))
    perturb(model, torch.Generator().manual_seed(103))
    model.eval()
    x = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad(), argmin_inputs() as seen:
        h = model.encoder(x)
        z = model.pre_quant(h)
        zq, qloss, idx = model.quantizer(z)
        post = model.post_quant(zq)
        xrec = model.decoder(post)
        fwd, fwd_loss = model(x)
        codes = model.encode_codes(x)
        xrec_codes = model.decode_codes(idx)
    assert torch.equal(fwd, xrec) and torch.equal(fwd_loss, qloss) and torch.equal(codes, idx)
    dist = seen[0].reshape(2, -1, N_EMBED)
    out = state_tensors(model, "param.")
    assert not any(k.startswith("param.loss.") for k in out)
    out.update(input=x, h=h, z=z, zq=zq, indices=idx, qloss=qloss, dist=dist, post=post, xrec=xrec,
               xrec_codes=xrec_codes)
    return out, gap(dist), idx.unique().numel()


def disc_fixture(LL, VP):
    torch.manual_seed(4)
    with narrow_disc(LL, DISC_WIDTH_DIV) as width:
        loss = VP.VQLPIPSWithDiscriminator(**LOSS_PARAMS)
    disc = loss.discriminator
    assert type(disc) is LL.StyleDiscriminator
    full = LL.StyleDiscriminator(size=DISC_SIZE)  # ~20M parameters, only for the shapes
    full_shapes = {k: tuple(width(s) for s in v.shape) for k, v in full.state_dict().items()}
    assert full_shapes == {k: tuple(v.shape) for k, v in disc.state_dict().items()}, "narrowing changed structure"
    perturb(disc, torch.Generator().manual_seed(104))
    loss.train()  # do_r1 needs self.training; D has no train/eval-dependent layers

    g = torch.Generator().manual_seed(5)
    real = torch.rand(8, 3, DISC_SIZE, DISC_SIZE, generator=g)
    fake = torch.rand(8, 3, DISC_SIZE, DISC_SIZE, generator=g)
    real6 = torch.rand(6, 3, DISC_SIZE, DISC_SIZE, generator=g)
    cb = torch.tensor(0.123)
    with torch.no_grad():
        logits, logits_fake, logits6 = disc(real), disc(fake), disc(real6)

    # The discriminator pass (optimizer_idx 1) at batch_idx 0, step 0: GAN loss + lazy R1.
    d_loss, dlog = loss(cb, real.clone(), fake.clone(), 1, 0, 0, last_layer=None, split="train")
    r1 = dlog["train/r1_reg"]
    assert torch.allclose(dlog["train/logits_real"], logits.mean())
    d_gan = LL.vanilla_d_loss(logits_fake, logits)
    # The generator pass (optimizer_idx 0); perceptual term 0 (see docstring), adversarial weight fixed.
    g_total, glog = loss(cb, real.clone(), fake.clone(), 0, 0, 0, last_layer=None, split="train")

    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x).sum(), x)
    assert torch.allclose(grad.square().sum([1, 2, 3]).mean(), r1, rtol=1e-5)
    assert torch.allclose(d_loss, d_gan + loss.r1_gamma * loss.do_r1_every * r1 / 2, rtol=1e-5)

    out = state_tensors(disc, "param.")
    out.update({
        "disc_input": real, "disc_logits": logits, "disc_fake": fake, "disc_logits_fake": logits_fake,
        "disc_input_b6": real6, "disc_logits_b6": logits6, "r1_grad": grad, "r1": r1.detach(),
        "r1_gamma": torch.tensor(float(loss.r1_gamma)), "r1_every": torch.tensor(float(loss.do_r1_every)),
        "d_loss": d_loss.detach(), "d_loss_gan": d_gan.detach(), "codebook_loss": cb,
        "g_total": g_total.detach(), "g_loss": glog["train/g_loss"], "rec_loss": glog["train/rec_loss"],
    })
    for name, fn in (("vanilla", LL.vanilla_d_loss), ("hinge", LL.hinge_d_loss), ("lsq", LL.least_square_d_loss)):
        out[f"loss.{name}_g"] = fn(logits_fake)
        out[f"loss.{name}_d"] = fn(logits_fake, logits)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of thuanz123/enhancing-transformers @{ET_COMMIT}")
    ap.add_argument("out", nargs="?", default=MODELS_DIR, help="output directory")
    a = ap.parse_args()

    install_stubs()
    with no_cuda_extensions():
        L, Q, V, LL, VP = upstream.load(
            a.upstream, ET, "enhancing.modules.stage1.layers", "enhancing.modules.stage1.quantizers",
            "enhancing.modules.stage1.vitvqgan", "enhancing.losses.layers", "enhancing.losses.vqperceptual")

    os.makedirs(a.out, exist_ok=True)
    qout, qgap, qused = quantizer_fixture(Q)
    mout, mgap, mused = model_fixture(V)
    fixtures = {
        "vit_encoder": (encoder_fixture(L), "enhancing/modules/stage1/layers.py ViTEncoder"),
        "vit_decoder": (decoder_fixture(L), "enhancing/modules/stage1/layers.py ViTDecoder"),
        "vit_quantizer": (qout, f"enhancing/modules/stage1/quantizers.py VectorQuantizer; {qused} codes used, "
                                f"min top-2 distance gap {qgap:.3e}"),
        "vit_model": (mout, f"enhancing/modules/stage1/vitvqgan.py ViTVQ; {mused} codes used, "
                            f"min top-2 distance gap {mgap:.3e}"),
        "vit_disc": (disc_fixture(LL, VP), "enhancing/losses/{layers,vqperceptual}.py StyleDiscriminator, "
                                           "VQLPIPSWithDiscriminator"),
    }
    for name, (out, what) in fixtures.items():
        path = os.path.join(a.out, f"{name}.safetensors")
        save(out, path)
        print(f"wrote {len(out)} tensors, {os.path.getsize(path)} bytes to {os.path.normpath(path)} "
              f"({what} of {upstream.REPOS[ET]}@{ET_COMMIT[:7]}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
