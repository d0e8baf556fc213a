"""PyTorch side of the VQGAN / TE-VQGAN training-step benchmark: one full taming training step
(generator step with L1 + perceptual + adaptive-weight hinge GAN + L_vq (+ TE orthogonality), then the
discriminator step; reference/taming_modules.py `vq_training_step`, spec.md §1.4, §1.5, §2.2), timed
after one warm-up step. Prints one JSON line {"median_s", "min_s", "torch"}.

    .venv/bin/python benches/vqgan_step.py --config quick --batch 4 --reps 2 --threads 2 --ortho 10

Configs (both use TE's encoder options: replication pad, v2, strided_conv; spec §2.4):
    quick  ch 64,  ch_mult [1,2,2], 1 res block, attn [16], 64 px, z 64,  embed 64,  n_embed 128
    paper  ch 128, ch_mult [1,2,2], 1 res block, attn [16], 64 px, z 256, embed 256, n_embed 128 (§2.5)
Discriminator: PatchGAN ndf 64, n_layers 3 (TE defaults). Perceptual: TinyFeatures LPIPS-like network
(Tessera's in-domain backbone) by default; `--perceptual vgg16` uses a random-weight VGG16 of taming's
LPIPS shape instead (5 taps), to gauge the cost of the original loss. The lin layers use Dropout(0.5)
in train mode, as taming's LPIPS does during Lightning training (spec §1.4, §13.3).
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

CONFIGS = {
    "quick": dict(ddconfig=dict(ch=64, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[16], resolution=64,
                                z_channels=64, in_channels=3, out_ch=3, dropout=0.0, double_z=False),
                  embed_dim=64, n_embed=128),
    "paper": dict(ddconfig=dict(ch=128, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[16], resolution=64,
                                z_channels=256, in_channels=3, out_ch=3, dropout=0.0, double_z=False),
                  embed_dim=256, n_embed=128),
}
TE_ENCODER = dict(use_replicationpad=True, version="v2", downsampling_method="strided_conv")

p = argparse.ArgumentParser()
p.add_argument("--config", choices=sorted(CONFIGS), default="quick")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ortho", type=float, default=0.0, help="TE orthogonality coefficient λ_o (0 = VQGAN, 10 = TE)")
p.add_argument("--perceptual", choices=["tiny", "vgg16"], default="tiny")
p.add_argument("--lr", type=float, default=1e-4)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

cfg = CONFIGS[a.config]
model = VQModel(dict(cfg["ddconfig"], **TE_ENCODER), n_embed=cfg["n_embed"], embed_dim=cfg["embed_dim"])
disc = NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3).apply(weights_init)
backbone = TinyFeatures() if a.perceptual == "tiny" else VGG16Features()
perceptual = LPIPSLike(backbone, backbone.chns, dropout=True).train()
opt_ae, opt_disc = make_optimizers(model, disc, a.lr)
x = torch.rand(a.batch, 3, 64, 64) * 2 - 1


def step():
    vq_training_step(model, disc, perceptual, x, opt_ae, opt_disc, global_step=1, disc_start=0, disc_weight=0.8,
                     codebook_weight=1.0, beta=0.25, ortho_weight=a.ortho)


report(step, a.reps)
