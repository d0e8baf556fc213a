"""Reference values for tessera-quant's tests. Where taming / TE-VQGAN has the code, the values come
from the UPSTREAM modules imported from checkouts at the pinned commits (reference/upstream.py); the
rest are PyTorch computations of the formulas of shared/reference/spec.md, for which neither upstream
has code.

Run from the repository root with the project's venv (plus numpy, which upstream imports):
    .venv/bin/pip install numpy
    .venv/bin/python reference/quant_fixtures.py TE_VQGAN_CHECKOUT TAMING_CHECKOUT
Writes crates/tessera-quant/tests/fixtures/quant.safetensors.

From upstream (the (N, D) = (64, 8) inputs are fed to the quantizers as a (1, D, 8, 8) BCHW map):
  euclid_dist, euclid_idx   TE-VQGAN VectorQuantizer, distance_measure='L2': the matrix its forward
                            passes to torch.argmin, and its indices
  cos_idx                   TE-VQGAN VectorQuantizer, distance_measure='cos_sim'
  vq_*                      TE-VQGAN VectorQuantizer (beta 0.25 on the commitment term), loss[0], output,
                            gradients of sum(out * upstream) + loss (also checked equal to taming's
                            VectorQuantizer2(legacy=False))
  legacy_*                  taming VectorQuantizer2(legacy=True) (beta on the codebook term)
  cosraw_*                  TE-VQGAN VectorQuantizer, distance_measure='cos_sim' (nearest by cosine,
                            raw codes out, losses on raw vectors)
  ortho_loss, ortho_grad    TE-VQGAN VectorQuantizer ortho_reg_coef=10 (force_emb_len_1=False): the
                            orthogonality term of its forward and its gradient on the codebook
  ortho_raw_loss            the same with force_emb_len_1=True
  ema_*                     taming EmbeddingEMA (cluster_size_ema_update, embed_avg_ema_update,
                            weight_update) fed with the one-hot sums of EMAVectorQuantizer.forward
                            (EMAVectorQuantizer itself cannot be constructed at 3ba01b2: its __init__
                            reads undefined names `codebook_dim`, `num_tokens`)
Formulas (no taming / TE-VQGAN code exists):
  cosine_*                  l2-normalised inputs and codes, normalised codes out (ViT-VQGAN, spec §6.2)
  fac_*                     factorized codes (ViT-VQGAN / vector-quantize-pytorch, spec §6.2, §7.1)
  ortho_closed_form         an identity check of the orthogonality term (spec §2.2)
  fsq8555_*, fsq43_*        FSQ (spec §7.2)
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from safetensors_io import save  # noqa: E402
from upstream_vqgan_fixtures import argmin_inputs  # noqa: E402

N, K, D, BETA = 64, 16, 8, 0.25
SIDE = 8  # N = SIDE * SIDE vectors of one image


def to_map(z):
    """(N, D) -> (1, D, SIDE, SIDE); row n is pixel (n // SIDE, n % SIDE)."""
    return z.view(1, SIDE, SIDE, z.shape[1]).permute(0, 3, 1, 2)


def from_map(zq):
    return zq.permute(0, 2, 3, 1).reshape(-1, zq.shape[1])


def run_upstream(q, z0, E0, G, loss_of=lambda loss: loss):
    """Run upstream quantizer `q` with codebook E0 on z0; returns idx, loss, output, d(out·G + loss)/dz,
    d(...)/dE and the distance matrix of its forward."""
    q.embedding.weight.data.copy_(E0)
    z = z0.clone().requires_grad_(True)
    with argmin_inputs() as seen:
        zq, loss, info = q(to_map(z))
    loss = loss_of(loss)
    out = from_map(zq)
    ((out * G).sum() + loss).backward()
    return dict(idx=info[2].reshape(-1), loss=loss.detach(), quantized=out.detach(), z_grad=z.grad,
                codebook_grad=q.embedding.weight.grad.clone()), seen[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("te_vqgan", help=f"checkout of wcshin-git/TE-VQGAN @{upstream.TE_VQGAN_COMMIT}")
    ap.add_argument("taming", help=f"checkout of CompVis/taming-transformers @{upstream.TAMING_COMMIT}")
    a = ap.parse_args()
    (tq,) = upstream.load(a.taming, "taming", "taming.modules.vqvae.quantize")
    (teq,) = upstream.load(a.te_vqgan, "te-vqgan", "taming.modules.vqvae.quantize")

    torch.manual_seed(0)
    out = {}
    z0 = torch.randn(N, D)
    E0 = torch.randn(K, D) * 0.5
    G = torch.randn(N, D)  # upstream gradient of the quantized output
    out.update(z=z0, codebook=E0, upstream=G)
    # Every other random input is drawn now, before upstream's constructors use the generator.
    Dl = 4
    W_in, b_in = torch.randn(Dl, D) * 0.3, torch.randn(Dl) * 0.1
    W_out, b_out = torch.randn(D, Dl) * 0.3, torch.randn(D) * 0.1
    E_f = torch.randn(K, Dl) * 0.5
    cs = torch.rand(K) * 3
    ea = torch.randn(K, D)
    FSQ = (("fsq8555", [8, 5, 5, 5]), ("fsq43", [4, 3]))
    fsq_z = {name: torch.randn(32, len(levels)) * 2 for name, levels in FSQ}

    def te(**kw):
        return teq.VectorQuantizer(K, D, beta=BETA, **{"ortho_reg_coef": 0.0, **kw})

    # --- distances and argmin, the beta-on-commitment quantizer (TE-VQGAN)
    vq, d = run_upstream(te(), z0, E0, G, loss_of=lambda loss: loss[0])
    out["euclid_dist"], out["euclid_idx"] = d, vq["idx"]
    out.update({f"vq_{k}": v for k, v in vq.items()})
    # taming's VectorQuantizer2(legacy=False) is the same quantizer.
    same, _ = run_upstream(tq.VectorQuantizer2(K, D, beta=BETA, legacy=False), z0, E0, G)
    for k in vq:
        assert torch.allclose(vq[k], same[k], atol=1e-6), k
    legacy, _ = run_upstream(tq.VectorQuantizer2(K, D, beta=BETA, legacy=True), z0, E0, G)
    out.update({f"legacy_{k}": v for k, v in legacy.items()})
    cosraw, _ = run_upstream(te(distance_measure="cos_sim"), z0, E0, G, loss_of=lambda loss: loss[0])
    out["cos_idx"] = cosraw["idx"]
    out.update({f"cosraw_{k}": v for k, v in cosraw.items()})

    # --- cosine with normalised codes out (formula: ViT-VQGAN)
    z = z0.clone().requires_grad_(True)
    E = E0.clone().requires_grad_(True)
    zz, ee = F.normalize(z, dim=1), F.normalize(E, dim=1)
    dist = zz.detach().pow(2).sum(1, keepdim=True) + ee.detach().pow(2).sum(1) - 2 * zz.detach() @ ee.detach().t()
    idx = dist.argmin(1)
    assert torch.equal(idx, out["cos_idx"])
    zq = ee[idx]
    loss = BETA * torch.mean((zq.detach() - zz) ** 2) + torch.mean((zq - zz.detach()) ** 2)
    st = zz + (zq - zz).detach()
    ((st * G).sum() + loss).backward()
    out.update(cosine_idx=idx, cosine_loss=loss.detach(), cosine_quantized=st.detach(), cosine_z_grad=z.grad,
               cosine_codebook_grad=E.grad)

    # --- factorized codes: Linear in (D -> 4), lookup, Linear out (4 -> D)  (formula: spec §6.2, §7.1)
    out.update(fac_w_in=W_in, fac_b_in=b_in, fac_w_out=W_out, fac_b_out=b_out, fac_codebook=E_f)
    x = z0.clone().requires_grad_(True)
    zf = x @ W_in.t() + b_in
    df = zf.detach().pow(2).sum(1, keepdim=True) + E_f.pow(2).sum(1) - 2 * zf.detach() @ E_f.t()
    idx_f = df.argmin(1)
    zq_f = E_f[idx_f]
    loss_f = BETA * torch.mean((zq_f - zf) ** 2)  # codebook term has no grad path to x
    y = (zf + (zq_f - zf).detach()) @ W_out.t() + b_out
    ((y * G).sum() + loss_f).backward()
    out.update(fac_idx=idx_f, fac_out=y.detach(), fac_x_grad=x.grad)

    # --- orthogonality regulariser (TE-VQGAN)
    LAMBDA = 10.0
    q = te(ortho_reg_coef=LAMBDA)
    q.embedding.weight.data.copy_(E0)
    ortho = q(to_map(z0))[1][1]
    ortho.backward()
    out["ortho_loss"] = ortho.detach()
    out["ortho_grad"] = q.embedding.weight.grad.clone()
    q = te(ortho_reg_coef=LAMBDA, force_emb_len_1=True)
    q.embedding.weight.data.copy_(E0)
    out["ortho_raw_loss"] = q(to_map(z0))[1][1].detach()
    cos2 = (F.normalize(E0, dim=1) @ F.normalize(E0, dim=1).t()) ** 2
    out["ortho_closed_form"] = LAMBDA * (cos2.sum() / K**2 - 1.0 / K)

    # --- EMA update (taming EmbeddingEMA)
    decay, eps = 0.99, 1e-5
    ema = tq.EmbeddingEMA(K, D, decay=decay, eps=eps)
    ema.cluster_size.data.copy_(cs)
    ema.embed_avg.data.copy_(ea)
    encodings = F.one_hot(out["euclid_idx"], K).type(z0.dtype)  # as EMAVectorQuantizer.forward
    ema.cluster_size_ema_update(encodings.sum(0))
    ema.embed_avg_ema_update(encodings.transpose(0, 1) @ z0)
    ema.weight_update(K)
    out.update(ema_cs=cs, ema_ea=ea, ema_cs_new=ema.cluster_size.detach().clone(),
               ema_ea_new=ema.embed_avg.detach().clone(), ema_weight_new=ema.weight.detach().clone())

    # --- FSQ (formula: spec §7.2)
    for name, levels in FSQ:
        L = torch.tensor(levels, dtype=torch.float32)
        zf = fsq_z[name]
        half_l = (L - 1) * (1 + 1e-3) / 2
        offset = torch.where(L % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        hw = torch.div(L, 2, rounding_mode="floor")
        codes = torch.round(torch.tanh(zf + shift) * half_l - offset) / hw
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), 0)
        idx = ((codes * hw + hw).round().long() * basis).sum(-1)
        out.update({f"{name}_z": zf, f"{name}_codes": codes, f"{name}_idx": idx})

    path = os.path.join(HERE, "..", "crates", "tessera-quant", "tests", "fixtures", "quant.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save(out, path)
    print(f"wrote {len(out)} tensors to {os.path.normpath(path)} (torch {torch.__version__}; upstream "
          f"{upstream.cite('te-vqgan', 'taming/modules/vqvae/quantize.py')}, "
          f"{upstream.cite('taming', 'taming/modules/vqvae/quantize.py')})")


if __name__ == "__main__":
    main()
