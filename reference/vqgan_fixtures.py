"""Reference values for tessera-models' VQGAN / TE-VQGAN tests, computed with the PyTorch modules of
reference/taming_modules.py (spec.md §1.2-§1.4, §2.2-§2.4).

Run from the repository root with the project's venv:
    .venv/bin/python reference/vqgan_fixtures.py
Writes crates/tessera-models/tests/fixtures/vqgan_{taming,te,te_blur}.safetensors, each holding
    param.<taming state_dict key>        every VQModel tensor (parameters and buffers, e.g. BlurPool filt)
    input (2,3,16,16) in [-1,1]
    h        encoder output, before quant_conv          (B, z_channels, 8, 8)
    z        after quant_conv                           (B, embed_dim, 8, 8)
    indices  int64 nearest-code indices                 (B, 8, 8)
    zq       quantized latent, BCHW                     (B, embed_dim, 8, 8)
    dist     squared distances ||z||^2+||e||^2-2z.e     (B, 8, 8, n_embed)  (extra: lets a test accept
             index flips where the reference's best and second-best distances nearly tie)
    xrec     decoder output (no tanh)                   (B, 3, 16, 16)
    disc.param.<key>, disc_input, disc_logits          PatchGAN (seed 1, ndf 16, n_layers 3, eval)
    lpips.param.<key>, lpips_value                      TinyFeatures + LPIPSLike(input, xrec) (seed 2)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_io import save  # noqa: E402
from taming_modules import LPIPSLike, NLayerDiscriminator, TinyFeatures, VQModel, weights_init  # noqa: E402

BASE = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], resolution=16, z_channels=32,
            in_channels=3, out_ch=3, dropout=0.0, double_z=False)
CONFIGS = {
    "taming": dict(BASE, use_replicationpad=False),
    "te": dict(BASE, use_replicationpad=True, version="v2", downsampling_method="strided_conv"),
    "te_blur": dict(BASE, use_replicationpad=True, version="v2", downsampling_method="convblurpool"),
}
N_EMBED, EMBED_DIM = 24, 16
OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "crates", "tessera-models", "tests", "fixtures")


def state_tensors(module, prefix):
    """Every state_dict tensor under `prefix + key`, skipping BatchNorm's num_batches_tracked."""
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def build(ddconfig):
    torch.manual_seed(0)
    model = VQModel(ddconfig, n_embed=N_EMBED, embed_dim=EMBED_DIM).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        h = model.encoder(x)
        z = model.quant_conv(h)
        zq, _, idx = model.quantize(z)
        xrec = model.decode(zq)
        # robustness of the argmin: smallest gap between the best and second-best distance
        e = model.quantize.embedding.weight
        zf = z.permute(0, 2, 3, 1).reshape(-1, EMBED_DIM)
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * zf @ e.t()
        dist = d.reshape(z.shape[0], z.shape[2], z.shape[3], N_EMBED)
        top2 = d.topk(2, dim=1, largest=False).values
        gap = (top2[:, 1] - top2[:, 0]).min().item()
        assert torch.equal(dist.argmin(-1), idx)
    out = state_tensors(model, "param.")
    out.update(input=x, h=h, z=z, indices=idx, zq=zq, xrec=xrec, dist=dist)
    return out, x, xrec, gap, idx.unique().numel()


def discriminator_fixture():
    """PatchGAN with n_layers=3 needs >= 32 px (16x16 shrinks to a zero-sized map), so it gets its own
    non-square input (2,3,32,48) -> logits (2,1,2,4). BatchNorm running stats are set to non-trivial
    values so that eval-mode BN is actually exercised."""
    torch.manual_seed(1)
    disc = NLayerDiscriminator(input_nc=3, ndf=16, n_layers=3).apply(weights_init)
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


def lpips_fixture(x, xrec):
    """TinyFeatures + LPIPSLike without dropout (lin weights `lin{i}.model.0.weight`), lin weights drawn
    uniform in [0, 1) (LPIPS lin weights are non-negative)."""
    torch.manual_seed(2)
    lp = LPIPSLike(TinyFeatures(), TinyFeatures.chns, dropout=False)
    for i in range(len(lp.chns)):
        w = getattr(lp, f"lin{i}").model[0].weight
        w.data.copy_(torch.rand_like(w))
    lp.eval()
    with torch.no_grad():
        val = lp(x, xrec)
    out = state_tensors(lp, "lpips.param.")
    out["lpips_value"] = val
    return out


if __name__ == "__main__":
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, cfg in CONFIGS.items():
        out, x, xrec, gap, used = build(cfg)
        out.update(discriminator_fixture())
        out.update(lpips_fixture(x, xrec))
        path = os.path.normpath(os.path.join(OUT_DIR, f"vqgan_{name}.safetensors"))
        save(out, path)
        print(f"wrote {len(out)} tensors to {path} (torch {torch.__version__}); "
              f"{used} codes used, min top-2 distance gap {gap:.3e}")
        for k in sorted(out):
            print(f"  {k:60s} {str(out[k].dtype).replace('torch.', ''):8s} {list(out[k].shape)}")
