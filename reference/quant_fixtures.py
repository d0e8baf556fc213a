"""Reference values for tessera-quant's tests, computed with PyTorch from the formulas of
shared/reference/spec.md §1.3, §2.2, §2.3, §4.2, §6.2, §7.2.

Run from the repository root with the project's venv:
    .venv/bin/python reference/quant_fixtures.py
Writes crates/tessera-quant/tests/fixtures/quant.safetensors.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_io import save  # noqa: E402

torch.manual_seed(0)
out = {}
N, K, D, BETA = 64, 16, 8, 0.25

z0 = torch.randn(N, D)
E0 = torch.randn(K, D) * 0.5
G = torch.randn(N, D)  # upstream gradient of the quantized output
out.update(z=z0, codebook=E0, upstream=G)

# --- distances and argmin (spec §2.3)
d = z0.pow(2).sum(1, keepdim=True) + E0.pow(2).sum(1) - 2 * z0 @ E0.t()
out["euclid_dist"] = d
out["euclid_idx"] = d.argmin(1)
zn, en = F.normalize(z0, dim=1), F.normalize(E0, dim=1)
out["cos_idx"] = (-(zn @ en.t())).argmin(1)


def vq_case(prefix, legacy=False, cosine=False):
    z = z0.clone().requires_grad_(True)
    E = E0.clone().requires_grad_(True)
    zz = F.normalize(z, dim=1) if cosine else z
    ee = F.normalize(E, dim=1) if cosine else E
    dist = zz.detach().pow(2).sum(1, keepdim=True) + ee.detach().pow(2).sum(1) - 2 * zz.detach() @ ee.detach().t()
    idx = dist.argmin(1)
    zq = ee[idx]
    commit = torch.mean((zq.detach() - zz) ** 2)
    codebook = torch.mean((zq - zz.detach()) ** 2)
    loss = (commit + BETA * codebook) if legacy else (BETA * commit + codebook)
    st = zz + (zq - zz).detach()
    total = (st * G).sum() + loss
    total.backward()
    out[f"{prefix}_idx"] = idx
    out[f"{prefix}_loss"] = loss.detach()
    out[f"{prefix}_quantized"] = st.detach()
    out[f"{prefix}_z_grad"] = z.grad
    out[f"{prefix}_codebook_grad"] = E.grad


vq_case("vq")
vq_case("legacy", legacy=True)
vq_case("cosine", cosine=True)

# --- factorized codes: Linear in (D -> 4), lookup, Linear out (4 -> D)  (spec §6.2, §7.1)
Dl = 4
W_in, b_in = torch.randn(Dl, D) * 0.3, torch.randn(Dl) * 0.1
W_out, b_out = torch.randn(D, Dl) * 0.3, torch.randn(D) * 0.1
E_f = torch.randn(K, Dl) * 0.5
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

# --- orthogonality regulariser (spec §2.2)
LAMBDA = 10.0
E = E0.clone().requires_grad_(True)
En = F.normalize(E, dim=1)
ortho = LAMBDA * ((En @ En.t() - torch.eye(K)) ** 2).sum() / K**2
ortho.backward()
cos2 = (F.normalize(E0, dim=1) @ F.normalize(E0, dim=1).t()) ** 2
out["ortho_loss"] = ortho.detach()
out["ortho_closed_form"] = LAMBDA * (cos2.sum() / K**2 - 1.0 / K)
out["ortho_grad"] = E.grad
out["ortho_raw_loss"] = LAMBDA * ((E0 @ E0.t() - torch.eye(K)) ** 2).sum() / K**2

# --- EMA update (spec §4.2)
decay, eps = 0.99, 1e-5
cs = torch.rand(K) * 3
ea = torch.randn(K, D)
onehot = F.one_hot(out["euclid_idx"], K).float()
cs_new = decay * cs + (1 - decay) * onehot.sum(0)
ea_new = decay * ea + (1 - decay) * onehot.t() @ z0
n = cs_new.sum()
cs_s = (cs_new + eps) / (n + K * eps) * n
out.update(ema_cs=cs, ema_ea=ea, ema_cs_new=cs_new, ema_ea_new=ea_new, ema_weight_new=ea_new / cs_s.unsqueeze(1))

# --- FSQ (spec §7.2)
for name, levels in (("fsq8555", [8, 5, 5, 5]), ("fsq43", [4, 3])):
    L = torch.tensor(levels, dtype=torch.float32)
    zf = torch.randn(32, len(levels)) * 2
    half_l = (L - 1) * (1 + 1e-3) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    hw = torch.div(L, 2, rounding_mode="floor")
    codes = torch.round(torch.tanh(zf + shift) * half_l - offset) / hw
    basis = torch.cumprod(torch.tensor([1] + levels[:-1]), 0)
    idx = ((codes * hw + hw).round().long() * basis).sum(-1)
    out.update({f"{name}_z": zf, f"{name}_codes": codes, f"{name}_idx": idx})

path = os.path.join(os.path.dirname(__file__), "..", "crates", "tessera-quant", "tests", "fixtures", "quant.safetensors")
os.makedirs(os.path.dirname(path), exist_ok=True)
save(out, path)
print(f"wrote {len(out)} tensors to {os.path.normpath(path)} (torch {torch.__version__})")
