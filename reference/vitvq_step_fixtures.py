"""Parity fixtures for tessera-train's ViT-VQGAN: two full training steps (autoencoder + discriminator
optimizer, R1) and the import of an upstream PyTorch-Lightning checkpoint, computed with the UPSTREAM
code of thuanz123/enhancing-transformers imported from a checkout at the pinned commit (the pins, the
stubs and the discriminator narrowing are those of reference/vitvq_fixtures.py, imported from there):

    thuanz123/enhancing-transformers @e1c185da5cc0eeefdded68cbff888d5b9c248372

Checkout without history (only the .py files are needed):
    git --git-dir=MIRROR archive e1c185da5cc0eeefdded68cbff888d5b9c248372 | tar -x -C DIR
Run from the repository root with the project's venv (plus numpy and einops: `.venv/bin/pip install
numpy einops`):
    .venv/bin/python reference/vitvq_step_fixtures.py DIR [OUT_DIR]
OUT_DIR defaults to crates/tessera-train/tests/fixtures.

Upstream files / classes used (see vitvq_fixtures.py for how they are made importable):
  enhancing/modules/stage1/vitvqgan.py    ViTVQ: __init__, forward, get_input, training_step,
                                          configure_optimizers, encode_codes, decode_codes
  enhancing/modules/stage1/{layers,quantizers}.py  ViTEncoder, ViTDecoder, VectorQuantizer
  enhancing/losses/vqperceptual.py        VQLPIPSWithDiscriminator.forward (generator / discriminator
                                          passes, lazy R1)
  enhancing/losses/layers.py              StyleDiscriminator (widths / DISC_WIDTH_DIV as in
                                          vitvq_fixtures.py), vanilla_d_loss
  enhancing/utils/general.py              initialize_from_config (builds the loss from its config)

Model (both files): ViTVQ(image_key='image', image_size=32, patch_size=8, encoder=decoder=dict(dim=64,
depth=2, heads=2, mlp_dim=128, dim_head=32), quantizer=dict(embed_dim=8, n_embed=64),
loss={target: VQLPIPSWithDiscriminator, params: disc_params={size: 32}, loglaplace_weight=0,
loggaussian_weight=1, perceptual_weight=0, adversarial_weight=0.1, codebook_weight=1, disc_start=0,
disc_loss='vanilla', r1_gamma=10, do_r1_every=16, use_adaptive_adv=False}), seed 0, then
vitvq_fixtures.perturb (every bias and LayerNorm weight + 0.1*N(0,1), generator seed 200) over the whole
model, discriminator included. lpips.LPIPS is vitvq_fixtures' parameter-free stub (perceptual_weight 0).

Training (vit_step): the optimizers are upstream's ViTVQ.configure_optimizers with
`model.learning_rate = LR` and no scheduler: AdamW(encoder + decoder + pre_quant + post_quant + quantizer
parameters, betas (0.9, 0.99), weight_decay 1e-4) and AdamW(loss.discriminator parameters, same), at
PyTorch's defaults otherwise (eps 1e-8, no amsgrad). PyTorch-Lightning 1.5.10 (upstream's pin) automatic
optimisation with two optimizers is emulated, model in train() mode: for batch_idx b in (0, 1)
(trainer.global_step = b, incremented once per batch in PL 1.5), batch {'image': x_b}, and for
optimizer_idx i in (0, 1): toggle_optimizer (every parameter of the OTHER optimizer gets
requires_grad False), closure = training_step(batch, b, i) -> optimizer.zero_grad() -> backward,
optimizer.step(closure), untoggle_optimizer. So the discriminator pass (i = 1) re-runs the whole
autoencoder forward with the weights already updated by optimizer 0. R1 (batch_idx % 16 == 0) is in
step 0 only. No gradient clipping, no accumulation, float32, CPU.

Import (vit_import): the same model before training, saved as a PL-style checkpoint.

Upstream semantics a port must match (all checked or visible in the fixture):
  * The quantizer codebook is in the autoencoder optimizer (vitvqgan.py:158) and there are no parameter
    groups: weight decay 1e-4 applies to every tensor, biases, LayerNorm weights and the codebook included
    (unused codebook rows get a zero, not absent, gradient: decay only). The sin-cos pos-embeddings are in
    that optimizer too but requires_grad=False (layers.py:172, :201): no grad, so AdamW skips them.
  * x is used as the batch gives it (get_input, vitvqgan.py:92-99; upstream's data is ToTensor, [0,1]);
    the decoder output (a ConvTranspose2d, no tanh / clamp) goes straight into the loss. Here x is U[-1,1);
    with perceptual_weight 0 no term depends on the range.
  * training_step (vitvqgan.py:101-127) runs self(x) with grad in both passes; the D pass detaches the
    reconstruction (vqperceptual.py:366) and calls inputs.requires_grad_(do_r1) on the batch tensor itself.
  * The only buffers are the Blur kernels; nothing changes during a step except the parameters (checked).
  * Checked per step: optimizer 0 changes every trainable autoencoder tensor and nothing else, optimizer 1
    every discriminator tensor and nothing else, the D-pass reconstruction equals the autoencoder's output
    with the optimizer-0 weights, g_total = rec + 0.1*g + q, R1 logged exactly when batch_idx % 16 == 0.
  * In the first AdamW step an element moves by lr*g/(|g|+eps) (+ decay): about lr*sign(g), except where
    |g| is near eps = 1e-8, where the step is sensitive to the gradient's rounding. The script prints how
    many step-0 elements moved by less than 0.9*lr and 0.5*lr (zero-gradient codebook rows aside): a port
    should expect differences up to ~lr on those few elements.

Writes to OUT_DIR (<key> = upstream ViTVQ state_dict key: encoder.*, decoder.*, quantizer.embedding.weight,
pre_quant.*, post_quant.*, loss.discriminator.* incl. the Blur `kernel` buffers; the stub LPIPS adds none):
  vit_step.safetensors
      init.<key>             every state_dict tensor before training
      x0, x1 (4,3,32,32)     the batches of steps 0 and 1, U[-1,1)
      lr (), weight_decay (), betas (2,), eps ()   float64: AdamW hyper-parameters of both optimizers
      r1_gamma (), r1_every (), adversarial_weight (), codebook_weight ()   float32 (exact values)
      for s in 0, 1:
      s{s}.g_total ()        optimizer-0 loss returned by training_step = rec_loss + 0.1*g_loss + q_loss
      s{s}.rec_loss ()       logged train/rec_loss = mse(xrec, x) (the nll term)
      s{s}.q_loss ()         logged train/quant_loss, the quantizer's loss
      s{s}.g_loss ()         logged train/g_loss = vanilla generator loss softplus(-D(xrec)).mean()
      s{s}.d_loss ()         optimizer-1 loss returned by training_step (GAN term, + R1 term in step 0)
      s{s}.r1 ()             step 0 only: logged train/r1_reg = |d sum D(x)/dx|^2 summed per image, mean
                             (d_loss = vanilla_d(D(xrec_d), D(x)) + r1_gamma*r1_every*r1/2)
      s{s}.logits_real (), s{s}.logits_fake ()   logged means of D(x), D(xrec_d) in the D pass
      s{s}.indices (4,16)    int64 code indices of the generator pass
      s{s}.xrec (4,3,32,32)  reconstruction handed to the loss in the generator pass
      s{s}.xrec_d (4,3,32,32) reconstruction handed to the loss in the discriminator pass (autoencoder
                             already stepped)
      s{s}.after.<key>       every state_dict tensor after the step (both optimizers)
  vit_import.ckpt          torch.save of {"epoch": 3, "global_step": 1234, "pytorch-lightning_version":
                           "1.5.10", "state_dict": ViTVQ.state_dict() (the OrderedDict itself, with its
                           _metadata, as Lightning saves it), "optimizer_states": [], "lr_schedulers": []}
  vit_import.safetensors
      input (2,3,32,32) U[-1,1), indices (2,16) int64 = encode_codes(input),
      xrec_codes (2,3,32,32) = decode_codes(indices)   (model in eval(), no grad)
"""
import argparse
import collections
import os
import sys

import torch
# torch.optim imports torch._dynamo lazily (first param group), and torch._dynamo's import runs
# importlib.util.find_spec over a list of third-party module names, which fails on the spec-less stubs
# (tqdm, PIL, ...) that install_stubs puts in sys.modules: import it while they are not there yet.
import torch._dynamo  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import save  # noqa: E402
from upstream_vqgan_fixtures import argmin_inputs, quiet, state_tensors  # noqa: E402
from vitvq_fixtures import (DISC_WIDTH_DIV, EMBED_DIM, ET, ET_COMMIT, IMAGE, LOSS_PARAMS, N_EMBED, PATCH,  # noqa: E402
                            VIT, AttrDict, gap, install_stubs, narrow_disc, no_cuda_extensions,
                            numpy_float_alias, perturb)

TRAIN_DIR = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-train", "tests", "fixtures"))
LR = 1e-3
BATCH = 4
STEP_LOSS = dict(LOSS_PARAMS, codebook_weight=1.0, disc_start=0, disc_loss="vanilla", r1_gamma=10, do_r1_every=16,
                 use_adaptive_adv=False)


def build_model(V, LL):
    torch.manual_seed(0)
    loss = AttrDict(target="enhancing.losses.vqperceptual.VQLPIPSWithDiscriminator", params=STEP_LOSS)
    with numpy_float_alias(), narrow_disc(LL, DISC_WIDTH_DIV):
        model = quiet(V.ViTVQ, image_key="image", image_size=IMAGE, patch_size=PATCH, encoder=AttrDict(VIT),
                      decoder=AttrDict(VIT), quantizer=AttrDict(embed_dim=EMBED_DIM, n_embed=N_EMBED), loss=loss)
    assert type(model.loss.discriminator) is LL.StyleDiscriminator
    perturb(model, torch.Generator().manual_seed(200))
    return model


class Lightning:
    """The parts of PyTorch-Lightning 1.5.10 that ViTVQ.training_step touches or that shape a step:
    self.log / self.log_dict (recorded here), trainer.global_step, toggle / untoggle_optimizer and the
    automatic-optimisation closure (training_step -> zero_grad -> backward inside optimizer.step)."""

    def __init__(self, model, lr=LR):
        self.model, self.logged = model, {}
        model.log = lambda name, value, **kw: self.logged.__setitem__(name, value.detach().clone())
        model.log_dict = lambda d, **kw: self.logged.update({k: v.detach().clone() for k, v in d.items()})
        model.learning_rate = lr
        self.optimizers, schedulers = model.configure_optimizers()
        assert schedulers == [] and len(self.optimizers) == 2

    def toggle(self, idx):
        # LightningModule.toggle_optimizer: every optimizer parameter off, then the current one's back to
        # what it was (the frozen pos-embeddings stay frozen).
        state = {}
        for opt in self.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p not in state:
                        state[p] = p.requires_grad
                        p.requires_grad = False
        for group in self.optimizers[idx].param_groups:
            for p in group["params"]:
                p.requires_grad = state[p]
        return state

    def untoggle(self, idx, state):
        for i, opt in enumerate(self.optimizers):
            if i != idx:
                for group in opt.param_groups:
                    for p in group["params"]:
                        if p in state:
                            p.requires_grad = state[p]

    def batch(self, batch, batch_idx, global_step):
        self.model.global_step = global_step
        results = []
        for idx, opt in enumerate(self.optimizers):
            state = self.toggle(idx)
            self.logged.clear()

            def closure():
                loss = self.model.training_step(batch, batch_idx, idx)
                opt.zero_grad()
                loss.backward()
                return loss

            loss = opt.step(closure)
            self.untoggle(idx, state)
            results.append((loss.detach().clone(), dict(self.logged)))
        return results


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(a, b, keys):
    return [k for k in keys if not torch.equal(a[k], b[k])]


def step_fixture(model, ae_keys, disc_keys, frozen, buffers):
    pl = Lightning(model)
    for opt in pl.optimizers:
        for g in opt.param_groups:
            assert g["betas"] == (0.9, 0.99) and g["weight_decay"] == 1e-4 and g["lr"] == LR and g["eps"] == 1e-8
            assert not g["amsgrad"]
    ids = {id(p): k for k, p in model.named_parameters()}
    opt_keys = [sorted(ids[id(p)] for g in o.param_groups for p in g["params"]) for o in pl.optimizers]
    assert opt_keys[0] == sorted(ae_keys + frozen) and opt_keys[1] == sorted(disc_keys), opt_keys

    seen_rec = []
    hook = model.loss.register_forward_pre_hook(lambda m, args: seen_rec.append(args[2].detach().clone()))
    g = torch.Generator().manual_seed(300)
    xs = [torch.rand(BATCH, 3, IMAGE, IMAGE, generator=g) * 2 - 1 for _ in range(2)]
    out = {f"init.{k}": v for k, v in snapshot(model).items()}
    f64 = dict(dtype=torch.float64)  # the Python floats upstream hands to AdamW, exactly
    out.update(x0=xs[0].clone(), x1=xs[1].clone(), lr=torch.tensor(LR, **f64), weight_decay=torch.tensor(1e-4, **f64),
               betas=torch.tensor([0.9, 0.99], **f64), eps=torch.tensor(1e-8, **f64),
               r1_gamma=torch.tensor(float(model.loss.r1_gamma)), r1_every=torch.tensor(float(model.loss.do_r1_every)),
               adversarial_weight=torch.tensor(float(model.loss.adversarial_weight)),
               codebook_weight=torch.tensor(float(model.loss.codebook_weight)))

    model.train()
    gaps = []
    for s, x in enumerate(xs):
        before = snapshot(model)
        seen_rec.clear()
        # Record what optimizer 0 alone did: wrap its step.
        mid = {}
        opt0_step = pl.optimizers[0].step

        def step0(closure, _orig=opt0_step):
            loss = _orig(closure)
            mid.update(snapshot(model))
            return loss

        pl.optimizers[0].step = step0
        with argmin_inputs() as dists:
            (g_total, glog), (d_loss, dlog) = pl.batch({"image": x}, s, s)
        del pl.optimizers[0].step
        after = snapshot(model)

        # optimizer 0 moved every trainable autoencoder tensor and nothing else; optimizer 1 every
        # discriminator tensor and nothing else; pos-embeddings and blur kernels never move.
        assert changed(before, mid, ae_keys) == ae_keys, "AE params not all updated by optimizer 0"
        assert changed(before, mid, disc_keys + frozen + buffers) == [], "optimizer 0 touched D / frozen / buffers"
        assert changed(mid, after, disc_keys) == disc_keys, "D params not all updated by optimizer 1"
        assert changed(mid, after, ae_keys + frozen + buffers) == [], "optimizer 1 touched AE / frozen / buffers"
        if s == 0:
            # |step| / lr of the first AdamW step, decay removed: ~1 unless |g| is near eps (or 0)
            r = torch.cat([((b[k] - a[k] * (1 - LR * 1e-4)) / LR).abs().flatten()
                           for a, b, ks in ((before, mid, ae_keys), (mid, after, disc_keys)) for k in ks])
            nz = r[r > 1e-3]
            print(f"step 0: {r.numel() - nz.numel()} elements with zero gradient (decay only); of the rest "
                  f"{(nz < 0.9).sum().item()} moved by < 0.9*lr, {(nz < 0.5).sum().item()} by < 0.5*lr, "
                  f"{(nz < 0.1).sum().item()} by < 0.1*lr (|g| ~<= eps)")

        # generator pass, then discriminator pass (forward re-run with optimizer 0's update)
        assert len(seen_rec) == 2 and not torch.equal(seen_rec[0], seen_rec[1])
        with torch.no_grad():
            model.load_state_dict(mid)
            assert torch.equal(model(x.detach())[0], seen_rec[1])
            model.load_state_dict(after)
        d0 = dists[0].reshape(BATCH, -1, N_EMBED)
        assert len(dists) == 2  # generator pass, discriminator pass
        gaps.append(min(gap(d) for d in dists))

        assert torch.allclose(g_total, glog["train/rec_loss"] + model.loss.adversarial_weight * glog["train/g_loss"]
                              + glog["train/quant_loss"], rtol=1e-6)
        assert ("train/r1_reg" in dlog) == (s % model.loss.do_r1_every == 0)
        out.update({
            f"s{s}.g_total": g_total, f"s{s}.rec_loss": glog["train/rec_loss"], f"s{s}.q_loss": glog["train/quant_loss"],
            f"s{s}.g_loss": glog["train/g_loss"], f"s{s}.d_loss": d_loss, f"s{s}.logits_real": dlog["train/logits_real"],
            f"s{s}.logits_fake": dlog["train/logits_fake"], f"s{s}.indices": d0.argmin(-1),
            f"s{s}.xrec": seen_rec[0], f"s{s}.xrec_d": seen_rec[1],
        })
        if "train/r1_reg" in dlog:
            out[f"s{s}.r1"] = dlog["train/r1_reg"]
        out.update({f"s{s}.after.{k}": v for k, v in after.items()})
        print(f"step {s}: g_total {g_total.item():.6f} rec {glog['train/rec_loss'].item():.6f} "
              f"q {glog['train/quant_loss'].item():.6f} g {glog['train/g_loss'].item():.6f} "
              f"d {d_loss.item():.6f} r1 {dlog.get('train/r1_reg', torch.tensor(float('nan'))).item():.6f} "
              f"codes used {d0.argmin(-1).unique().numel()}, min top-2 code distance gap (both passes) {gaps[-1]:.3e}")
    hook.remove()
    return out


def import_fixture(model, out_dir):
    model.eval()
    g = torch.Generator().manual_seed(400)
    x = torch.rand(2, 3, IMAGE, IMAGE, generator=g) * 2 - 1
    with torch.no_grad(), argmin_inputs() as dists:
        idx = model.encode_codes(x)
        xrec = model.decode_codes(idx)
    ckpt = {"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.5.10", "state_dict": model.state_dict(),
            "optimizer_states": [], "lr_schedulers": []}
    assert isinstance(ckpt["state_dict"], collections.OrderedDict)
    path = os.path.join(out_dir, "vit_import.ckpt")
    torch.save(ckpt, path)
    return {"input": x, "indices": idx, "xrec_codes": xrec}, gap(dists[0]), path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of thuanz123/enhancing-transformers @{ET_COMMIT}")
    ap.add_argument("out", nargs="?", default=TRAIN_DIR, help="output directory")
    a = ap.parse_args()

    install_stubs()
    with no_cuda_extensions():
        V, LL, _ = upstream.load(a.upstream, ET, "enhancing.modules.stage1.vitvqgan", "enhancing.losses.layers",
                                 "enhancing.losses.vqperceptual")
    os.makedirs(a.out, exist_ok=True)

    model = build_model(V, LL)
    keys = list(model.state_dict())
    params = dict(model.named_parameters())
    buffers = [k for k in keys if k not in params]
    frozen = [k for k, p in params.items() if not p.requires_grad]
    disc_keys = [k for k in params if k.startswith("loss.discriminator.")]
    ae_keys = [k for k, p in params.items() if p.requires_grad and not k.startswith("loss.")]
    assert all(k.startswith("loss.discriminator.") and k.endswith(".kernel") for k in buffers), buffers
    assert sorted(frozen) == ["decoder.de_pos_embedding", "encoder.en_pos_embedding"], frozen
    assert not [k for k in keys if k.startswith("loss.") and not k.startswith("loss.discriminator.")]
    print(f"state_dict: {len(keys)} tensors ({len(ae_keys)} AE params, {len(frozen)} frozen, {len(disc_keys)} D params,"
          f" {len(buffers)} buffers), {sum(v.numel() for v in model.state_dict().values())} numbers")

    imp, igap, ckpt_path = import_fixture(model, a.out)
    steps = step_fixture(model, ae_keys, disc_keys, frozen, buffers)
    for name, out, what in (("vit_step", steps, "ViTVQ two training steps"),
                            ("vit_import", imp, f"ViTVQ encode_codes / decode_codes, min top-2 gap {igap:.3e}")):
        path = os.path.join(a.out, f"{name}.safetensors")
        save(out, path)
        print(f"wrote {len(out)} tensors, {os.path.getsize(path)} bytes to {os.path.normpath(path)} "
              f"({what} of {upstream.REPOS[ET]}@{ET_COMMIT[:7]}, torch {torch.__version__})")
    print(f"wrote {os.path.getsize(ckpt_path)} bytes to {os.path.normpath(ckpt_path)}")


if __name__ == "__main__":
    main()
