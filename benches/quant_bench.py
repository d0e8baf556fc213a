"""PyTorch side of `tessera bench quant`: the same vector-quantizer step as tessera-quant
(Euclidean nearest code in chunks of 8192 inputs, β-on-commitment loss, straight-through output,
per-code counts), forward + backward, timed the same way. Prints one JSON line.

    .venv/bin/python benches/quant_bench.py --n 65536 --dim 256 --codes 1024 --reps 5 --threads 2
"""
import argparse

import torch
from bench_timing import report

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=65536)
p.add_argument("--dim", type=int, default=256)
p.add_argument("--codes", type=int, default=1024)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--chunk", type=int, default=8192)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

E = ((torch.rand(a.codes, a.dim) * 2 - 1) / a.codes).requires_grad_(True)
x = torch.randn(a.n, a.dim).requires_grad_(True)
g = torch.randn(a.n, a.dim)


def nearest(z, e):
    with torch.no_grad():
        ee = e.pow(2).sum(1)
        out = []
        for s in range(0, z.shape[0], a.chunk):
            c = z[s : s + a.chunk]
            d = c.pow(2).sum(1, keepdim=True) + ee - 2 * c @ e.t()
            out.append(d.argmin(1))
        return torch.cat(out)


def step():
    idx = nearest(x.detach(), E.detach())
    zq = E.index_select(0, idx)
    loss = 0.25 * torch.mean((x - zq.detach()) ** 2) + torch.mean((zq - x.detach()) ** 2)
    counts = torch.bincount(idx, minlength=a.codes)
    st = x + (zq - x).detach()
    ((st * g).sum() + loss).backward()
    _ = counts.tolist()
    x.grad = None
    E.grad = None


report(step, a.reps)
