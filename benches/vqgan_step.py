"""PyTorch side of the VQGAN / TE-VQGAN training-step benchmark: one full taming training step
(generator step with the pixel term + perceptual + adaptive-weight hinge GAN + L_vq (+ TE orthogonality),
then the discriminator step on the updated generator's reconstructions; reference/taming_modules.py
`vq_training_step`, spec.md §1.4, §1.5, §2.2), timed after one warm-up step. Prints one JSON line
{"median_s", "min_s", "torch"}.

`tessera bench tokenizer --config quick|paper|FILE.toml` runs it with the architecture read from the
preset (configs/mnist64-te-quick.toml, configs/mnist64-te.toml), so both sides build the same model.
By hand, the defaults are the quick preset:

    .venv/bin/python benches/vqgan_step.py --batch 8 --reps 3 --threads 2 --ortho 10
    .venv/bin/python benches/vqgan_step.py --ch 128 --attn 16 --z 256 --embed 256   # paper (§2.5)

Discriminator: PatchGAN (`--ndf`, `--disc-layers`; TE defaults 64, 3). Perceptual: TinyFeatures
LPIPS-like network (Tessera's in-domain backbone) by default; `--perceptual vgg16` uses a random-weight
VGG16 of taming's LPIPS shape instead (5 taps), to gauge the cost of the original loss. The lin layers
use Dropout(0.5) in train mode, as taming's LPIPS does during Lightning training (spec §1.4, §13.3).
global_step (1) >= disc_start (0), so the GAN terms and the adaptive weight are active.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from bench_timing import report  # noqa: E402
from taming_modules import (  # noqa: E402
    LPIPSLike, NLayerDiscriminator, TinyFeatures, VGG16Features, VQModel, make_optimizers, vq_training_step,
    weights_init)


def ints(text):
    return [int(v) for v in text.split(",") if v]


p = argparse.ArgumentParser()
p.add_argument("--ch", type=int, default=32)
p.add_argument("--ch-mult", type=ints, default=[1, 2, 2])
p.add_argument("--num-res-blocks", type=int, default=1)
p.add_argument("--attn", type=ints, default=[], help="attention resolutions, comma-separated")
p.add_argument("--resolution", type=int, default=64)
p.add_argument("--z", type=int, default=64, help="z_channels")
p.add_argument("--embed", type=int, default=64, help="embed_dim (code dimension)")
p.add_argument("--codes", type=int, default=128, help="n_embed")
p.add_argument("--replication-pad", type=int, choices=[0, 1], default=1)
p.add_argument("--version", choices=["v1", "v2"], default="v2")
p.add_argument("--downsampling", default="strided_conv")
p.add_argument("--ndf", type=int, default=64)
p.add_argument("--disc-layers", type=int, default=3)
p.add_argument("--pixel", choices=["l1", "l2"], default="l1")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ortho", type=float, default=0.0, help="TE orthogonality coefficient λ_o (0 = VQGAN, 10 = TE)")
p.add_argument("--perceptual", choices=["tiny", "vgg16"], default="tiny")
p.add_argument("--lr", type=float, default=1e-4)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

ddconfig = dict(ch=a.ch, ch_mult=a.ch_mult, num_res_blocks=a.num_res_blocks, attn_resolutions=a.attn,
                resolution=a.resolution, z_channels=a.z, in_channels=3, out_ch=3, dropout=0.0, double_z=False,
                use_replicationpad=bool(a.replication_pad), version=a.version,
                downsampling_method=a.downsampling)
model = VQModel(ddconfig, n_embed=a.codes, embed_dim=a.embed)
disc = NLayerDiscriminator(input_nc=3, ndf=a.ndf, n_layers=a.disc_layers).apply(weights_init)
backbone = TinyFeatures() if a.perceptual == "tiny" else VGG16Features()
perceptual = LPIPSLike(backbone, backbone.chns, dropout=True).train()
opt_ae, opt_disc = make_optimizers(model, disc, a.lr)
x = torch.rand(a.batch, 3, a.resolution, a.resolution) * 2 - 1


def step():
    vq_training_step(model, disc, perceptual, x, opt_ae, opt_disc, global_step=1, disc_start=0, disc_weight=0.8,
                     codebook_weight=1.0, beta=0.25, ortho_weight=a.ortho, pixel=a.pixel)


report(step, a.reps)
