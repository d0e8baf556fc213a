"""PyTorch side of the ViT-VQGAN training-step benchmark (`tessera bench vit`): ONE full training step of
the UPSTREAM code, thuanz123/enhancing-transformers @e1c185da5cc0eeefdded68cbff888d5b9c248372, imported
from a checkout (first positional argument; nothing upstream is copied here). The checkout is made
importable on CPU by reference/vitvq_fixtures.py's helpers (stubs for pytorch_lightning / lpips / wandb /
torchvision / kornia, no CUDA-extension build, the np.float alias, `narrow_disc`) and checked against the
pinned blob ids by reference/upstream.py. Checkout without history:

    git --git-dir=MIRROR archive e1c185da5cc0eeefdded68cbff888d5b9c248372 | tar -x -C DIR

Usage (the defaults are the quick preset configs/mnist64-vit-quick.toml):

    .venv/bin/python benches/vitvq_step.py DIR [--image 64 --patch 8 --dim 128 --depth 4 --heads 4
        --mlp 512 --dim-head 32 --embed-dim 32 --n-embed 256 --disc-div 8 --channel-multiplier 2
        --batch 16 --reps 5 --threads 2 --lr 5e-4 --r1 every --blur upstream]

Model: upstream ViTVQ(image_size, patch_size, encoder = decoder = {dim, depth, heads, mlp_dim, dim_head},
quantizer = VectorQuantizer{embed_dim, n_embed} (l2-normalised, beta 0.25), loss =
VQLPIPSWithDiscriminator(disc_params={size: image, channel_multiplier}, loglaplace_weight 0,
loggaussian_weight 1, perceptual_weight 0 (LPIPS's ImageNet VGG16 weights cannot be fetched here; lpips
is a parameter-free zero stub), adversarial_weight 0.1, codebook_weight 1, disc_start 0, disc_loss
vanilla, r1_gamma 10, do_r1_every 16)) -- the paper's recipe as upstream's imagenet_vitvq_*.yaml minus
the perceptual term. Optimisers: upstream ViTVQ.configure_optimizers (AdamW betas (0.9, 0.99),
weight_decay 1e-4; encoder + decoder + pre/post_quant + codebook, and the discriminator), constant --lr
(no scheduler).

Discriminator width: upstream's StyleDiscriminator hard-codes channels {4..32: 512, 64: 256*cm,
128: 128*cm, ...} (cm = channel_multiplier). `--disc-div D` builds it with every width divided by D
(vitvq_fixtures.narrow_disc: 512 -> 512/D, the minibatch-stddev 512+1 -> 512/D+1, the flattened
512*4*4 -> 512/D*4*4; RGB and the logit kept), so the narrowed channels are 512/D at <= 32 px and
256*cm/D at 64 px. Tessera's StyleDiscConfig has channels(res) = width if res <= 32 else
width*channel_multiplier*32/res, i.e. 256*cm/D at 64 px for width 512/D: the two agree at every
resolution (checked at start-up, together with the narrowed state_dict having exactly the full-width
keys with every width divided). Hence
    --disc-div D --channel-multiplier cm   <=>   Tessera [disc] width = 512/D, channel_multiplier = cm
    default  --disc-div 8  --channel-multiplier 2  <=> width 64, channel_multiplier 2 (the quick preset;
             64 channels at every resolution 64..4)
             --disc-div 16 --channel-multiplier 1  <=> width 32, channel_multiplier 1 (16 channels at
             64 px, 32 at 32..4)
D must divide 512 and 256*cm and be 1 or >= 4 (narrow_disc keeps widths below D, e.g. RGB's 3).

The step, Lightning-1.x automatic optimisation of ViTVQ.training_step (the batch is {"image": x}, x
uniform in [0, 1) as upstream's loaders give; a fresh copy per step, since the R1 pass sets
requires_grad on it): for optimizer_idx 0 (autoencoder) then 1 (discriminator): toggle_optimizer
(every parameter of the other optimiser gets requires_grad False, the rest keep their own flag, e.g. the
frozen pos-embeddings), loss = training_step(batch, batch_idx, optimizer_idx) (each pass runs the
autoencoder forward; the generator pass backpropagates the MSE + codebook + 0.1 * vanilla G loss through
D into the autoencoder, the discriminator pass trains D on real vs. the detached reconstruction),
backward, step, zero_grad, untoggle_optimizer; global_step += 1. self.log / log_dict are no-ops.

Lazy R1: upstream adds r1_gamma * 16 * R1 / 2 (double backward through D) when batch_idx % 16 == 0.
  --r1 on      every timed step is an R1 step (batch_idx 0)
  --r1 off     no timed step is (batch_idx 1)
  --r1 every   (default) both are timed, each after its own warm-up step, `reps` times each; median_s /
               min_s are the amortised (15 * no_r1 + with_r1) / 16 of the medians / minima, and
               median_no_r1_s, min_no_r1_s, with_r1_s (median), min_with_r1_s are reported too.

Blur (--blur): StyleDiscriminator's downsampling ConvLayers blur with upstream's upfirdn2d, whose CPU path
(upfirdn2d_native) reshapes (B, C, H, W) to (B*C, 1, H, W) and runs a single-channel conv2d; oneDNN is
very slow on that shape, its input-gradient above all (measured here, 2 threads: fwd+bwd of the
(1024, 1, 68, 68) * (1, 1, 4, 4) blur ~0.9 s against ~0.09 s as a 64-group depthwise conv), and it is
most of the default step's time. `--blur upstream` (default) times upstream as it is; `--blur depthwise`
replaces only that function, at run time, by the same pad + correlate-with-the-flipped-kernel done as
one depthwise conv (values and input gradients checked against upstream's at start-up), to see the step
without the pathology.

Output: the bench_timing protocol -- the last stdout line is JSON with "median_s", "min_s", "torch" (plus
"r1", "blur", "threads", "batch", "params_ae", "params_disc", "disc_channels", "tessera_disc" and the --r1 every
keys above). One line describing the model goes to stderr. On a 2-core machine the times swing several-fold
when other processes (e.g. a cargo build) share the CPU; time on an idle machine.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time

import torch
# torch.optim's first add_param_group imports torch._dynamo, whose trace rules call importlib.util.find_spec
# on module names such as tqdm; the stub modules installed below have no __spec__, so that would fail. Import
# it first (it imports none of the stubbed names).
import torch._dynamo  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)
from bench_timing import report  # noqa: E402
import upstream  # noqa: E402
from vitvq_fixtures import (  # noqa: E402
    ET, ET_COMMIT, AttrDict, install_stubs, narrow_disc, no_cuda_extensions, numpy_float_alias)
from upstream_vqgan_fixtures import quiet  # noqa: E402
from vitvq_step_fixtures import Lightning  # noqa: E402

R1_EVERY = 16


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("upstream", help=f"checkout of thuanz123/enhancing-transformers @{ET_COMMIT}")
    p.add_argument("--image", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=512)
    p.add_argument("--dim-head", type=int, default=32)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--n-embed", type=int, default=256)
    p.add_argument("--disc-div", type=int, default=8, help="divide the StyleDiscriminator's widths by this")
    p.add_argument("--channel-multiplier", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--r1", choices=["on", "off", "every"], default="every")
    p.add_argument("--blur", choices=["upstream", "depthwise"], default="upstream",
                   help="upstream: upfirdn2d_native as is; depthwise: the same blur as one grouped conv (see docstring)")
    return p.parse_args(argv)


def tessera_channels(width, cm, res):
    """tessera-models StyleDiscConfig::channels."""
    return width if res <= 32 else max(width * cm * 32 // res, 1)


def check_disc(LL, disc, size, cm, div, width_fn):
    """The narrowed discriminator = full-width upstream (built for its shapes only; tens of millions of
    parameters, freed at once) with every width divided; its per-resolution channels = Tessera's with width
    512/div. (Not on the meta device: that imports torch._dynamo, which trips over the stub modules.)"""
    full = LL.StyleDiscriminator(size=size, channel_multiplier=cm)
    want = {k: tuple(width_fn(s) for s in v.shape) for k, v in full.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in disc.state_dict().items()}
    del full
    assert want == got, "narrowing changed the discriminator's structure"
    # blocks[0] = ConvLayer(3, ch[size], 1) = [EqualConv2d, FusedLeakyReLU]; blocks[i] = StyleBlock(ch[size/2^(i-1)],
    # ch[size/2^i]).
    chans = {size: disc.blocks[0][0].weight.shape[0]}
    res = size
    for blk in list(disc.blocks)[1:]:
        res //= 2
        chans[res] = blk.skip[-1].weight.shape[0]  # skip = [Blur, EqualConv2d(in, out, 1)]
    width = 512 // div
    tess = {r: tessera_channels(width, cm, r) for r in chans}
    assert chans == tess, f"narrowed upstream channels {chans} != Tessera width {width}, cm {cm}: {tess}"
    return chans, width


def depthwise_upfirdn2d(native):
    """upfirdn2d_native for up = 1 and non-negative pads (every Blur of StyleDiscriminator) as one depthwise
    conv: pad, correlate each channel with the flipped kernel, stride `down`; anything else goes to `native`."""
    def upfirdn2d_depthwise(input, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
        if (up_x, up_y) != (1, 1) or min(pad_x0, pad_x1, pad_y0, pad_y1) < 0:
            return native(input, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)
        c = input.shape[1]
        w = torch.flip(kernel, [0, 1]).expand(c, 1, *kernel.shape).contiguous()
        out = torch.nn.functional.pad(input, [pad_x0, pad_x1, pad_y0, pad_y1])
        return torch.nn.functional.conv2d(out, w, stride=(down_y, down_x), groups=c)
    return upfirdn2d_depthwise


def use_depthwise_blur():
    """Swap upstream's CPU upfirdn2d path (looked up as a module global by op/upfirdn2d.py's upfirdn2d) for
    depthwise_upfirdn2d, after checking values and input gradients agree on every Blur shape used."""
    op = sys.modules["enhancing.losses.op.upfirdn2d"]
    native = op.upfirdn2d_native
    fast = depthwise_upfirdn2d(native)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    k = k / k.sum()
    g = torch.Generator().manual_seed(0)
    for pad in ((2, 2), (1, 1), (2, 1)):  # Blur pads of the 3x3 and 1x1 downsampling ConvLayers
        x = torch.randn(3, 5, 11, 11, generator=g, requires_grad=True)
        args = (1, 1, 1, 1, pad[0], pad[1], pad[0], pad[1])
        ref, new = native(x, k, *args), fast(x, k, *args)
        assert ref.shape == new.shape and torch.allclose(ref, new, atol=1e-6), pad
        gy = torch.randn(ref.shape, generator=g)
        (gr,), (gn,) = torch.autograd.grad(ref, x, gy), torch.autograd.grad(new, x, gy)
        assert torch.allclose(gr, gn, atol=1e-6), pad
    op.upfirdn2d_native = fast


def build(a):
    """Upstream ViTVQ with its loss and optimisers, driven as Lightning 1.5 drives them; returns
    (lightning, info)."""
    if a.disc_div != 1 and (a.disc_div < 4 or 512 % a.disc_div or (256 * a.channel_multiplier) % a.disc_div):
        raise SystemExit(f"--disc-div {a.disc_div}: must divide 512 and 256*channel_multiplier, and be 1 or >= 4")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    install_stubs()
    with no_cuda_extensions():
        V, LL = upstream.load(a.upstream, ET, "enhancing.modules.stage1.vitvqgan", "enhancing.losses.layers")
    if a.blur == "depthwise":
        use_depthwise_blur()
    vit = AttrDict(dim=a.dim, depth=a.depth, heads=a.heads, mlp_dim=a.mlp, dim_head=a.dim_head)
    loss = AttrDict(target="enhancing.losses.vqperceptual.VQLPIPSWithDiscriminator", params=dict(
        disc_start=0, disc_loss="vanilla", disc_params={"size": a.image, "channel_multiplier": a.channel_multiplier},
        codebook_weight=1.0, loglaplace_weight=0.0, loggaussian_weight=1.0, perceptual_weight=0.0,
        adversarial_weight=0.1, use_adaptive_adv=False, r1_gamma=10, do_r1_every=R1_EVERY))
    with numpy_float_alias(), narrow_disc(LL, a.disc_div) as width_fn:
        model = quiet(V.ViTVQ, image_key="image", image_size=a.image, patch_size=a.patch, encoder=vit,
                      decoder=vit, quantizer=AttrDict(embed_dim=a.embed_dim, n_embed=a.n_embed), loss=loss)
    disc = model.loss.discriminator
    assert type(disc) is LL.StyleDiscriminator
    chans, width = check_disc(LL, disc, a.image, a.channel_multiplier, a.disc_div, width_fn)
    model.train()
    lightning = Lightning(model, lr=a.lr)  # what PyTorch-Lightning provides: log, optimizers, toggling
    n_disc = sum(p.numel() for p in disc.parameters())
    n_ae = sum(p.numel() for g in lightning.optimizers[0].param_groups for p in g["params"])
    info = {"params_ae": n_ae, "params_disc": n_disc, "disc_channels": {str(r): c for r, c in chans.items()},
            "tessera_disc": {"width": width, "channel_multiplier": a.channel_multiplier}}
    return lightning, info


def make_step(lightning, x):
    """One training step per call: both optimizers in turn (reference/vitvq_step_fixtures.Lightning)."""
    state = {"global_step": 0}

    def step(batch_idx):
        batch = {"image": x.clone()}  # a fresh tensor per step, as from a data loader
        lightning.batch(batch, batch_idx, state["global_step"])
        state["global_step"] += 1

    return step


def timed(fn, reps):
    """bench_timing.report's protocol without the printing: one warm-up call, `reps` timed calls."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[0]


def main(argv=None):
    a = parse_args(argv)
    lightning, info = build(a)
    x = torch.rand(a.batch, 3, a.image, a.image)
    step = make_step(lightning, x)
    print(f"upstream ViTVQ {a.image}px/{a.patch} dim {a.dim} depth {a.depth} heads {a.heads} mlp {a.mlp}, "
          f"{a.n_embed}x{a.embed_dim} codes, {info['params_ae']} AE params; StyleDiscriminator channels "
          f"{info['disc_channels']} ({info['params_disc']} params) = Tessera [disc] {info['tessera_disc']}; "
          f"batch {a.batch}, {a.threads} threads, r1 {a.r1}, blur {a.blur}", file=sys.stderr)
    extra = dict(info, r1=a.r1, blur=a.blur, threads=a.threads, batch=a.batch, reps=a.reps)
    if a.r1 in ("on", "off"):
        batch_idx = 0 if a.r1 == "on" else 1
        out = _capture_report(lambda: step(batch_idx), a.reps)
        out.update(extra)
    else:
        med_no, min_no = timed(lambda: step(1), a.reps)
        med_r1, min_r1 = timed(lambda: step(0), a.reps)
        k = R1_EVERY
        out = {"median_s": ((k - 1) * med_no + med_r1) / k, "min_s": ((k - 1) * min_no + min_r1) / k,
               "torch": torch.__version__, "median_no_r1_s": med_no, "min_no_r1_s": min_no,
               "with_r1_s": med_r1, "min_with_r1_s": min_r1}
        out.update(extra)
    print(json.dumps(out))


def _capture_report(fn, reps):
    """bench_timing.report's JSON as a dict (its line is re-printed with the extra keys)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        report(fn, reps)
    return json.loads(buf.getvalue().strip().splitlines()[-1])


if __name__ == "__main__":
    main()
