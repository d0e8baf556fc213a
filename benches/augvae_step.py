"""PyTorch side of the AugVAE training-step benchmark (`tessera bench augvae`): ONE full training step of
the UPSTREAM code, tgisaturday/L-Verse @e52ed9ff42f0ae54508d7d9ceb332c0711d7f667, imported from a checkout
(first positional argument; nothing upstream is copied here) with reference/augvae_fixtures.py's stubs
(pytorch_lightning, torchvision) and pin check. Checkout without history:

    git --git-dir=MIRROR archive e52ed9ff42f0ae54508d7d9ceb332c0711d7f667 | tar -x -C DIR

Usage (the defaults are the quick preset configs/mnist64-augvae-quick.toml):

    .venv/bin/python benches/augvae_step.py DIR [--image 64 --hidden 16 --ch-mult 1 2 4 --res-blocks 1
        --levels 16 8 4 --z 32 --codebook-dim 32 --tokens 256 --batch 16 --reps 5 --threads 2 --lr 4.8e-4]

Model: upstream AugVAE(args) with use_attn False, EMA codebook (decay 0.99, eps 1e-5), quant_beta 0.25,
loss_type 'mse' (the configs' lpips_l2 adds LPIPS on ImageNet VGG16, whose weights cannot be fetched here;
Tessera's side runs loss_type "mse" too). Widths below 32: upstream's GroupNorm(32, C) needs C divisible by
32, so vae.py's `Normalize` is replaced, as in the fixtures, by GroupNorm(g(C), C) with g(C) the largest
power of two <= 32 dividing C (Tessera's rule; identical to upstream's for every C divisible by 32).

The step, as Lightning runs AugVAE.training_step with configure_optimizers' AdamW (betas (0.9, 0.999),
weight_decay 1e-5), constant lr (ReduceLROnPlateau acts per epoch): zero_grad, loss = training_step((x,), 0)
(the forward moves the shared EMA codebook once per level), backward, step. x is uniform in [-1, 1).
Prints one JSON line: {"median_s", "min_s", "torch"} (bench_timing.report).
"""
import argparse
import os
import sys
import types

import torch
import torch._dynamo  # noqa: F401  (AdamW imports it; it must see the real modules, not the stubs)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from bench_timing import report  # noqa: E402
import upstream  # noqa: E402
from augvae_fixtures import LV, install_stubs, norm_groups  # noqa: E402
from upstream_vqgan_fixtures import quiet  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help="checkout of tgisaturday/L-Verse @e52ed9f")
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--ch-mult", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--res-blocks", type=int, default=1)
    ap.add_argument("--levels", type=int, nargs="+", default=[16, 8, 4])
    ap.add_argument("--z", type=int, default=32)
    ap.add_argument("--codebook-dim", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=4.8e-4)
    return ap.parse_args(argv)


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    install_stubs()
    vqvae, vae = upstream.load(a.upstream, LV, "latent_verse.models.vqvae", "latent_verse.modules.vqvae.vae")
    vae.Normalize = lambda c: torch.nn.GroupNorm(norm_groups(c), c, eps=1e-6, affine=True)
    args = types.SimpleNamespace(
        resolution=a.image, num_tokens=a.tokens, attn_resolutions=a.levels, hidden_dim=a.hidden, in_channels=3,
        ch_mult=a.ch_mult, num_res_blocks=a.res_blocks, dropout=0.0, z_channels=a.z, double_z=False,
        use_attn=False, codebook_dim=a.codebook_dim, quant_beta=0.25, quant_ema_decay=0.99, quant_ema_eps=1e-5,
        loss_type="mse", p_loss_weight=0.1, lr_decay=False, finetune=False, log_images=False,
        learning_rate=a.lr, batch_size=a.batch)
    torch.manual_seed(0)
    model = quiet(vqvae.AugVAE, args, args.batch_size, args.learning_rate)
    model.train()
    opt = model.configure_optimizers()[0][0]
    x = torch.rand(a.batch, 3, a.image, a.image) * 2 - 1

    def step():
        opt.zero_grad()
        loss = model.training_step((x,), 0)
        loss.backward()
        opt.step()

    report(step, a.reps)


if __name__ == "__main__":
    main()
