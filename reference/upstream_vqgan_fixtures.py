"""Parity fixtures for tessera-models' VQGAN / TE-VQGAN / PatchGAN / LPIPS tests and tessera-eval's
Trans_eq_acc test, computed with the UPSTREAM code imported from checkouts at the pinned commits
(reference/upstream.py checks every imported file's git blob id):

    CompVis/taming-transformers @3ba01b241669f5ade541ce990f7650a3b8f65318
    wcshin-git/TE-VQGAN         @248f88302de796170176d76b5a00ce3c261a6cff

Run from the repository root with the project's venv (plus numpy, which TE's BlurPool needs):
    .venv/bin/pip install numpy
    .venv/bin/python reference/upstream_vqgan_fixtures.py TE_VQGAN_CHECKOUT [TAMING_CHECKOUT]

What comes from where:
  vqgan_taming   taming/models/vqgan.py VQModel of CompVis/taming-transformers (its Encoder, Decoder,
                 VectorQuantizer2, quant_conv, post_quant_conv). Without TAMING_CHECKOUT: TE-VQGAN's
                 VQModel with use_replicationpad=False, version='v1', strided_conv, whose encoder is
                 taming's (the script says which it used; at the pinned commits both give a
                 byte-identical file).
  vqgan_te       TE-VQGAN taming/models/vqgan.py VQModel: use_replicationpad, version v2, strided_conv.
  vqgan_te_blur  the same with downsampling_method='convblurpool'.
  disc.*         TE-VQGAN taming/modules/discriminator/model.py NLayerDiscriminator + weights_init
                 (identical to taming's but for comments).
  lpips.*        TE-VQGAN taming/modules/losses/lpips.py: LPIPS.forward, ScalingLayer, NetLinLayer,
                 normalize_tensor, spatial_average — on Tessera's TinyFeatures backbone
                 (reference/tessera_backbones.py), because upstream's backbone is torchvision's
                 ImageNet VGG16, whose weights cannot be fetched here (and torchvision is not
                 installed); the LPIPS object is assembled around it without LPIPS.__init__, which would
                 load VGG16 and the lin weights. The backbone is Tessera's own: no upstream exists.
  trans_eq       TE-VQGAN taming/models/vqgan.py ShiftEqMetric.cal_acc on hand-made code maps (its
                 encoder / quant_conv / quantize arguments are stand-ins that return the maps).

Writes crates/tessera-models/tests/fixtures/vqgan_{taming,te,te_blur}.safetensors, each holding
    param.<upstream VQModel state_dict key>  every tensor (parameters and buffers, e.g. BlurPool filt)
    input (2,3,16,16) in [-1,1]
    h        encoder output, before quant_conv          (B, z_channels, 8, 8)
    z        after quant_conv                           (B, embed_dim, 8, 8)
    indices  int64 nearest-code indices                 (B, 8, 8)
    zq       quantized latent, BCHW                     (B, embed_dim, 8, 8)
    dist     the distance matrix upstream's quantizer hands to torch.argmin, (B, 8, 8, n_embed) (lets a
             test accept index flips where the best and second-best distances nearly tie)
    xrec     decoder output (no tanh)                   (B, 3, 16, 16)
    disc.param.<key>, disc_input, disc_logits          PatchGAN (seed 1, ndf 16, n_layers 3, eval)
    lpips.param.<key>, lpips_value                      LPIPS(input, xrec) on TinyFeatures (seed 2)
and crates/tessera-eval/tests/fixtures/trans_eq.safetensors:
    case{i}.indices (N, h, w) int64, case{i}.batch (batch size; N is a multiple), case{i}.correct,
    case{i}.total (int64), case{i}.acc (f64): ShiftEqMetric's counters and result.
"""
import argparse
import contextlib
import io
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import save  # noqa: E402
from tessera_backbones import TinyFeatures  # noqa: E402

BASE = dict(ch=32, out_ch=3, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.0, in_channels=3,
            resolution=16, z_channels=32, double_z=False)
CONFIGS = {
    "taming": dict(BASE),
    "te": dict(BASE, use_replicationpad=True, version="v2", downsampling_method="strided_conv"),
    "te_blur": dict(BASE, use_replicationpad=True, version="v2", downsampling_method="convblurpool"),
}
N_EMBED, EMBED_DIM = 24, 16
ROOT = os.path.join(HERE, "..")
MODELS_DIR = os.path.join(ROOT, "crates", "tessera-models", "tests", "fixtures")
EVAL_DIR = os.path.join(ROOT, "crates", "tessera-eval", "tests", "fixtures")


@contextlib.contextmanager
def argmin_inputs():
    """Record every tensor passed to torch.argmin while active (upstream's distance matrix)."""
    seen, orig = [], torch.argmin

    def spy(input, *args, **kwargs):
        seen.append(input.detach().clone())
        return orig(input, *args, **kwargs)

    torch.argmin = spy
    try:
        yield seen
    finally:
        torch.argmin = orig


def quiet(fn, *args, **kwargs):
    """Upstream constructors print their options; keep the script's output readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def state_tensors(module, prefix):
    """Every state_dict tensor under `prefix + key`, skipping BatchNorm's num_batches_tracked."""
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def make_vqmodel(name, te, taming):
    """Upstream VQModel for config `name`; returns (model, provenance)."""
    ddconfig = CONFIGS[name]
    if name == "taming" and taming is not None:
        # CompVis VQModel: `from main import instantiate_from_config` is stubbed (loss -> Identity).
        return quiet(taming.VQModel, ddconfig, lossconfig={}, n_embed=N_EMBED, embed_dim=EMBED_DIM), \
            upstream.cite("taming", "taming/models/vqgan.py")
    # TE's VQModel instantiates its loss with its own instantiate_from_config: nn.Identity has no tensors.
    model = quiet(te.VQModel, ddconfig, lossconfig={"target": "torch.nn.Identity"}, n_embed=N_EMBED,
                  embed_dim=EMBED_DIM)
    return model, upstream.cite("te-vqgan", "taming/models/vqgan.py")


def build(name, te, taming):
    torch.manual_seed(0)
    model, source = make_vqmodel(name, te, taming)
    model = model.eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad(), argmin_inputs() as seen:
        # VQModel.encode is encoder -> quant_conv -> quantize; h is kept on the way.
        h = model.encoder(x)
        z = model.quant_conv(h)
        zq, _, info = model.quantize(z)
        xrec = model.decode(zq)
        # The same through upstream's own encode / forward.
        assert torch.equal(model.encode(x)[0], zq)
        assert torch.equal(model(x)[0], xrec)
    b, _, hh, ww = z.shape
    idx = info[2].reshape(b, hh, ww)
    d = seen[0]  # (B*H*W, n_embed), rows in (b, h, w) order
    dist = d.reshape(b, hh, ww, N_EMBED)
    assert torch.equal(dist.argmin(-1), idx)
    top2 = d.topk(2, dim=1, largest=False).values
    gap = (top2[:, 1] - top2[:, 0]).min().item()
    out = state_tensors(model, "param.")
    assert not any(k.startswith("param.loss.") for k in out)
    out.update(input=x, h=h, z=z, indices=idx, zq=zq, xrec=xrec, dist=dist)
    return out, x, xrec, gap, idx.unique().numel(), source


def discriminator_fixture(disc_mod):
    """PatchGAN with n_layers=3 needs >= 32 px (16x16 shrinks to a zero-sized map), so it gets its own
    non-square input (2,3,32,48) -> logits (2,1,2,4). BatchNorm running stats are set to non-trivial
    values so that eval-mode BN is actually exercised."""
    torch.manual_seed(1)
    disc = disc_mod.NLayerDiscriminator(input_nc=3, ndf=16, n_layers=3).apply(disc_mod.weights_init)
    for m in disc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features) + 0.5)
    disc.eval()
    xd = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        logits = disc(xd)
    out = state_tensors(disc, "disc.param.")
    out.update(disc_input=xd, disc_logits=logits)
    return out


def lpips_fixture(lpips_mod, x, xrec):
    """Upstream LPIPS (its forward, ScalingLayer, NetLinLayer without dropout: weight keys
    `lin{i}.model.0.weight`) on TinyFeatures' 3 taps. LPIPS.__init__ is bypassed (it builds torchvision's
    VGG16 and loads ImageNet / LPIPS weights); its forward reads lin0..lin4, of which only the first
    len(chns) are used, so lin3 / lin4 are plain None attributes. Lin weights are drawn uniform in [0, 1)
    (LPIPS lin weights are non-negative). All parameters frozen, as LPIPS.__init__ does."""
    torch.manual_seed(2)
    lp = lpips_mod.LPIPS.__new__(lpips_mod.LPIPS)
    torch.nn.Module.__init__(lp)
    lp.scaling_layer = lpips_mod.ScalingLayer()
    lp.chns = list(TinyFeatures.chns)
    lp.net = TinyFeatures()
    for i, c in enumerate(lp.chns):
        setattr(lp, f"lin{i}", lpips_mod.NetLinLayer(c, use_dropout=False))
    for i in range(len(lp.chns), 5):
        setattr(lp, f"lin{i}", None)
    for i in range(len(lp.chns)):
        w = getattr(lp, f"lin{i}").model[0].weight
        w.data.copy_(torch.rand_like(w))
    for p in lp.parameters():
        p.requires_grad = False
    lp.eval()
    with torch.no_grad():
        val = lp(x, xrec)
    out = state_tensors(lp, "lpips.param.")
    out["lpips_value"] = val
    return out


class _Maps(torch.nn.Module):
    """Stand-in for ShiftEqMetric.cal_acc's encoder (no downsampling: num_resolutions 1) and
    quant_conv: hands the code maps through."""
    num_resolutions = 1

    def forward(self, x):
        return x


def _quantize_maps(h):
    """Stand-in for the quantizer: TE's VectorQuantizer returns indices as (B*H*W, 1) in info[2]."""
    return h, None, (None, None, h.round().long().reshape(-1, 1))


def trans_eq_maps(gen, groups, h, w, flip, n_codes=6):
    """Groups of 5 code maps [C, UL, UR, LL, LR]: a random (h//2, w//2) "digit" patch at the positions
    ShiftEqMetric crops, random background, then a fraction `flip` of all cells re-drawn at random."""
    h2, w2, h4, w4 = h // 2, w // 2, h // 4, w // 4
    maps = torch.randint(0, n_codes, (groups, 5, h, w), generator=gen)
    patch = torch.randint(0, n_codes, (groups, h2, w2), generator=gen)
    for k, (r, c) in enumerate([(h4, w4), (0, 0), (0, w2), (h2, 0), (h2, w2)]):
        maps[:, k, r:r + h2, c:c + w2] = patch
    redo = torch.rand(maps.shape, generator=gen) < flip
    maps[redo] = torch.randint(0, n_codes, (int(redo.sum()),), generator=gen)
    return maps.reshape(groups * 5, h, w)


def trans_eq_fixture(vqgan_mod):
    """ShiftEqMetric.cal_acc (upstream) over several map sizes, including sides that are not multiples
    of 4 (6, 10, 2), where upstream's centre crop `fmap_H//4:-fmap_H//4` (i.e. h//4 : h - ceil(h/4)) must
    agree with Tessera's, and a case of two batches (the counters accumulate over the loader). Odd sides
    are left out: upstream's LL / LR crops `fmap_H//2:` are then one row taller than UL / UR and
    `A == B` fails to broadcast."""
    gen = torch.Generator().manual_seed(3)
    cases = [  # (groups per batch, batches, h, w, flip)
        (4, 1, 8, 8, 0.0), (4, 1, 8, 8, 0.1), (2, 2, 16, 16, 0.3), (3, 1, 4, 4, 0.5), (2, 1, 6, 10, 0.2),
        (1, 1, 2, 2, 0.5), (5, 1, 8, 8, 1.0)]
    out = {}
    for i, (groups, batches, h, w, flip) in enumerate(cases):
        idx = trans_eq_maps(gen, groups * batches, h, w, flip)
        batch = groups * 5
        metric = vqgan_mod.ShiftEqMetric.__new__(vqgan_mod.ShiftEqMetric)  # __init__ would read PNGs
        metric.batch_size, metric.correct, metric.tot = batch, 0, 0
        metric.loader = [b[:, None].float() for b in idx.split(batch)]
        with contextlib.redirect_stdout(io.StringIO()):
            acc = metric.cal_acc(encoder=_Maps(), quant_conv=_Maps(), quantize=_quantize_maps, device="cpu")
        out.update({f"case{i}.indices": idx, f"case{i}.batch": torch.tensor(batch),
                    f"case{i}.correct": torch.tensor(metric.correct), f"case{i}.total": torch.tensor(metric.tot),
                    f"case{i}.acc": torch.tensor(acc, dtype=torch.float64)})
        print(f"  trans_eq case{i}: {batch * batches} maps of {h}x{w}: {metric.correct}/{metric.tot} = {acc:.4f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("te_vqgan", help=f"checkout of wcshin-git/TE-VQGAN @{upstream.TE_VQGAN_COMMIT}")
    ap.add_argument("taming", nargs="?",
                    help=f"checkout of CompVis/taming-transformers @{upstream.TAMING_COMMIT} (for vqgan_taming)")
    a = ap.parse_args()

    taming_vqgan = None
    if a.taming:
        (taming_vqgan,) = upstream.load(a.taming, "taming", "taming.models.vqgan")
    te_vqgan, te_disc, te_lpips = upstream.load(
        a.te_vqgan, "te-vqgan", "taming.models.vqgan", "taming.modules.discriminator.model",
        "taming.modules.losses.lpips")

    os.makedirs(MODELS_DIR, exist_ok=True)
    for name in CONFIGS:
        out, x, xrec, gap, used, source = build(name, te_vqgan, taming_vqgan)
        out.update(discriminator_fixture(te_disc))
        out.update(lpips_fixture(te_lpips, x, xrec))
        path = os.path.normpath(os.path.join(MODELS_DIR, f"vqgan_{name}.safetensors"))
        save(out, path)
        print(f"wrote {len(out)} tensors to {path} (VQModel of {source}, torch {torch.__version__}); "
              f"{used} codes used, min top-2 distance gap {gap:.3e}")

    os.makedirs(EVAL_DIR, exist_ok=True)
    path = os.path.normpath(os.path.join(EVAL_DIR, "trans_eq.safetensors"))
    out = trans_eq_fixture(te_vqgan)
    save(out, path)
    print(f"wrote {len(out)} tensors to {path} (ShiftEqMetric of "
          f"{upstream.cite('te-vqgan', 'taming/models/vqgan.py')})")


if __name__ == "__main__":
    main()
