"""Parity fixture for tessera-quant's CVQ-VAE quantiser (LG-CVQ): upstream's own `CVQVectorQuantiser`
(taming/modules/vqvae/quantize.py:3550-3673, with `FeaturePool` :3675-3717) of

    623851394/LG-VQ-language-guided-codebook-learning @42c3ff1613e554c5cffb91a5c491f7b454cf3d7f

imported from a checkout (reference/upstream.py checks the git blob ids of quantize.py and vis_utils.py,
registered by reference/lgvq_fixtures.py). Nothing upstream is copied or edited.

Checkout without history:
    git --git-dir=MIRROR archive 42c3ff1613e554c5cffb91a5c491f7b454cf3d7f | tar -x -C DIR
Run from the repository root with the project's venv (upstream imports numpy and einops):
    .venv/bin/python reference/cvq_fixtures.py DIR [--out crates/tessera-quant/tests/fixtures/cvq.safetensors]
Unused third-party imports of quantize.py are stubbed exactly as in lgvq_fixtures.py: torch_geometric
(GCN/GAT, :8-9) and, through vis_utils.py, matplotlib, sklearn.manifold, scipy.io.

Settings: CVQVectorQuantiser(num_embed=K=16, embed_dim=D=4, beta=0.25, distance='l2', anchor='probrandom',
first_batch=False, contras_loss=True), float32, CPU. Input z is (B, C, H, W) = (3, 4, 3, 5): N = 45 vectors,
so N/K = 2.81 (int -> 2 positives averaged) and N/2 = 22.5 (int -> 22 negatives): both truncations matter,
and H != W checks the flattening order (row n = (b, h, w) row-major, i.e. z.permute(0,2,3,1).reshape(N, D)).

UPSTREAM FORWARD, in order (quantize.py line numbers; d is (N, K); "sg" = .detach()):
  __init__ :3562-3579  decay = 0.99, init = False; FeaturePool(K, D) (its __init__ draws torch.rand((K, D)),
        :3692, i.e. it consumes RNG before the codebook); nn.Embedding(K, D) then weight.data.uniform_(-1/K, 1/K)
        (:3578); buffer embed_prob = zeros(K) (:3579).
  1 :3587-3588  zf = rearrange(z, 'b c h w -> b h w c').view(-1, D)                         (N, D)
  2 :3591-3595  distance 'l2': d = -sum(sg(zf)^2, 1, keepdim) - sum(E^2, 1) + 2 * einsum(sg(zf), E^T)
        = -||z_i - e_k||^2 (NEGATIVE squared distance, larger = closer). z is detached, E is NOT: d carries
        gradient to the codebook only.
        :3596-3600  distance 'cos': d = normalize(zf).detach() @ normalize(E)^T (cosine similarity).
  3 :3603-3605  sort_distance, indices = d.sort(dim=1) (ascending); encoding_indices = indices[:, -1]
        = argmax_k d = nearest code (on an exact tie: whichever the unstable-by-contract sort leaves last; the
        fixture has no ties, min top-2 gap printed).
  4 :3606-3607  encodings = zeros(N, K) (float32) scattered with 1 at encoding_indices (one-hot).
  5 :3610  z_q = (encodings @ E).view(z.shape)   (PRE-update codebook; matmul, so grad goes to E)
  6 :3612  loss = beta * mean((sg(z_q) - z)^2) + mean((z_q - sg(z))^2)   (beta on the COMMITMENT term, the
        corrected placement; both means over all B*H*W*C elements)
  7 :3614-3616  z_q = z + sg(z_q - z) (straight-through), back to (B, C, H, W). The returned z_q has NO path to
        the codebook: d(anything of z_q)/dE = 0.
  8 :3620-3621  avg_probs = mean(encodings, 0); perplexity = exp(-sum(avg_probs * log(avg_probs + 1e-10)))
  -- only if self.training (:3625); in eval mode the forward ends here: loss = (1+beta)*mse, no state change --
  9 :3627  embed_prob.mul_(0.99).add_(avg_probs, alpha=0.01)   (in place, BEFORE the decay is computed)
        (float32; add_ with alpha rounds as a fused a + 0.01*b: bitwise equal to torch.add(e*0.99, avg, alpha=0.01),
        not to e*0.99 + avg*0.01, which differs by ~1 ulp)
  10 :3629-3641  if anchor in ('closest','random','probrandom') and not self.init:
        'closest'    :3631-3633  _, idx = d.sort(dim=0); anchor_k = sg(zf)[idx[-1, k]] (nearest feature per code)
        'random'     :3635-3636  anchors = FeaturePool.query(sg(zf)) (:3694-3717): while fewer than K features
                     stored: if N > K take K random rows (torch.randint(0, N, (K,))) and mark the pool full,
                     else append the N rows; once full: if N > K again K random rows, else overwrite randperm(K)[:N]
                     pool slots with the batch. Returns the (K, D) pool.
        'probrandom' :3638-3641  P = softmax(d.t(), dim=1) (K, N: over the batch, no temperature, d = -dist^2);
                     a = torch.multinomial(P, num_samples=1).view(-1) (K,) ; anchor_k = sg(zf)[a[k]]
        :3643  decay = exp(-(embed_prob * K * 10) / (1 - 0.99) - 1e-3)  (K,) = exp(-1000*K*embed_prob - 0.001),
               using the embed_prob just updated in step 9. Never exactly 1: a never-used code gets
               exp(-0.001) = 0.9990005; after the 1st call a code used `count` times gets
               exp(-1000*K*0.01*count/N - 0.001) (count 1 here: 0.0285), small but NONZERO, so EVERY code is
               mixed with its anchor (the port must apply the formula to all K codes, not only dead ones).
        :3644  E.data = E.data * (1 - decay) + anchor * decay   (replaces the parameter's .data: no autograd, no
               version bump; see SURPRISE below)
        :3645-3646  if first_batch: self.init = True
  11 :3648-3654  if contras_loss (training only):
        sort_distance, _ = d.sort(dim=0)    (each code's column sorted ascending over the N features)
        dis_pos = sort_distance[-max(1, int(N / K)):, :].mean(0, keepdim=True)   (1, K): mean of the int(N/K)
                  closest features' d (here 2)
        dis_neg = sort_distance[:int(N * 1 / 2), :]   (int(N/2), K): the int(N/2) farthest features (here 22)
        logits = cat([dis_pos, dis_neg], 0).t() / 0.07    (K, 1 + int(N/2)); temperature 0.07 divides d itself
        contra_loss = F.cross_entropy(logits, zeros(K, long))   (target column 0 = the positive; mean over K)
        loss += contra_loss   (ADDED with weight 1 to the returned loss). The d here is the PRE-update d of step 2
        (computed before :3644), and z is detached in d: the term trains the codebook only.
  12 :3656  return z_q, loss, (perplexity, encodings, encoding_indices)
  get_codebook_entry :3658-3673  E[indices] viewed as `shape` (b, h, w, c) and permuted to (b, c, h, w).

SURPRISE (checked by this script): the .data replacement at :3644 happens AFTER the graph of d and of the loss is
built, but autograd saved the leaf E itself for pow(E, 2) (the -||e||^2 term of d); `weight.data = new` swaps
the storage of that same tensor without bumping its version (no error). So the backward that follows the forward
(as in training) reads the POST-update codebook in that one term: with G = dcontra/dd (N, K),
    grad_E[k] (contrastive) = sum_i G[i, k] * (2 * zf_i - 2 * E_after[k])      (E_after, not E_before)
while the forward values (d, z_q, loss) all use E_before. It is harmless: sum_i G[i, k] = 0 exactly (row k of
the logits is built from column k of d with total weight 1 per logit, and the softmax-CE gradient of a row sums
to 0), so grad_E[k] = 2 * sum_i G[i, k] * zf_i and pre/post differ only by float rounding (diagnostics
`surprise_max_abs` in the metadata; `<c>.grad_codebook_contra_pre` stores the E_before version). A port may use
either. The codebook-part gradient (through the matmul of step 5) is 2 * sum_{i: idx_i = k} (z_q_i - z_i) / (N*D)
and does not read E. The commitment part gives grad_z = 2 * beta * (z - z_q) / (N*D); the contrastive part sends
nothing to z. The sampled anchors and the decay never get gradients (multinomial; .data).
No dtype issue: embed_prob, decay, encodings and the codebook are float32 throughout (encodings is created as the
default float dtype on z.device, so a half-precision z would mismatch; irrelevant here).

first_batch=True (no fixture): at the first TRAINING forward with anchor in ('closest','random','probrandom') the
re-initialisation runs once as above and sets self.init = True (:3645-3646); every later forward skips step 10
entirely (no anchors, no multinomial draw, the codebook only moves by the optimiser), while the embed_prob EMA
(step 9) and the contrastive term (step 11) keep running. `init` is a plain attribute, not a buffer: it is not
saved in state_dict, so a restored model re-initialises once more. eval() forwards never set it.

Reproducibility: the module is built after torch.manual_seed(0); torch.manual_seed(100 + c) is set right before
forward call c (c = 0, 1 training; 2 eval). The anchor draw is random: torch.multinomial is wrapped during each
call and its input P and output recorded, so the Rust port replays `train{c}.anchor_idx` instead of torch's RNG.

Writes OUT (default crates/tessera-quant/tests/fixtures/cvq.safetensors); metadata: upstream repo/commit,
settings, dims, seeds, torch version. Tensors (prefix train0., train1. = the two consecutive training calls,
eval. = one eval-mode call after them; N = 45, K = 16, D = C = 4):
  init.codebook (K, D), init.embed_prob (K,)       state after construction (seed 0)
  <c>.z (3, 4, 3, 5)                               the input of that call
  <c>.codebook_before/after (K, D), <c>.embed_prob_before/after (K,)   state around the call
  <c>.z_q (3, 4, 3, 5), <c>.loss (), <c>.perplexity (), <c>.encodings (N, K) f32, <c>.indices (N,) i64
  <c>.d (N, K)                  negative squared distances (train: upstream's own d, taken from the softmax
                                input; eval: recomputed with upstream's formula, checked against the indices)
  <c>.loss_commit (), <c>.loss_codebook ()   beta * mse and mse (same mse value, see step 6)
  <c>.avg_probs (K,)
  <c>.grad_z_loss (3, 4, 3, 5), <c>.grad_codebook_loss (K, D)    d loss / d z, d loss / d E (backward taken
                                right after the call, i.e. after the .data update, as in training)
  <c>.grad_z_zq2, <c>.grad_codebook_zq2      gradients of (z_q ** 2).sum() (the latter all zeros: STE)
  train<c> only:
  <c>.loss_contra ()            upstream's F.cross_entropy output (captured), loss = commit + codebook + contra
  <c>.contra_logits (K, 1 + 22) the cross-entropy input (already / 0.07), captured
  <c>.contra_grad_d (N, K)      d loss_contra / d d (upstream's graph)
  <c>.grad_codebook_contra (K, D), <c>.grad_codebook_codebookpart (K, D)  the two parts of grad_codebook_loss
                                (contra from upstream's captured tensor; codebook part = total - contra)
  <c>.grad_codebook_contra_pre (K, D)   NOT upstream: the same term if E_before were used in the backward
                                (what a "clean" port would compute), to show the size of the SURPRISE above
  <c>.anchor_probs (K, N)       softmax(d.t(), 1), the multinomial's input (captured)
  <c>.anchor_idx (K,) i64       the multinomial's output: code k is pulled towards zf[anchor_idx[k]]
  <c>.anchor_feat (K, D)        zf[anchor_idx]
  <c>.decay (K,)                exp(-(embed_prob_after * K * 10) / (1 - 0.99) - 1e-3), recomputed
"""
import argparse
import importlib
import json
import os
import sys

import torch
import torch._dynamo  # noqa: F401  (imported before any stub so it sees the real modules)
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from lgvq_fixtures import LG, LG_COMMIT, install_third_party_stubs  # noqa: E402  (registers the LG-VQ commit and blob ids)
from safetensors_io import load as st_load  # noqa: E402
from safetensors_io import save as st_save  # noqa: E402

CVQ = "lg-vq-cvq"  # the two LG-VQ files this fixture imports, checked against the same commit
upstream.COMMITS[CVQ] = LG_COMMIT
upstream.REPOS[CVQ] = upstream.REPOS[LG]
upstream.BLOBS[CVQ] = {k: upstream.BLOBS[LG][k] for k in
                       ("taming/modules/vqvae/quantize.py", "taming/modules/vqvae/vis_utils.py")}
QUANTIZE = "taming/modules/vqvae/quantize.py"

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "crates", "tessera-quant", "tests", "fixtures"))
K, D, BETA = 16, 4, 0.25
B, H, W = 3, 3, 5
N = B * H * W
SETTINGS = dict(num_embed=K, embed_dim=D, beta=BETA, distance="l2", anchor="probrandom", first_batch=False,
                contras_loss=True)
MODULE_SEED, CALL_SEED, INPUT_SEED = 0, 100, 7
Z_STD = 0.1  # same order as the codebook init U(+-1/K): several codes used, several unused


def load_quantize(root):
    """Import upstream's quantize.py only (with vis_utils.py), stubbing its unused third-party imports."""
    root = os.path.abspath(root)
    upstream.check_checkout(root, CVQ)

    install_third_party_stubs()
    for k in [k for k in sys.modules if k == "taming" or k.startswith("taming.")]:
        del sys.modules[k]
    sys.dont_write_bytecode = True  # leave the checkout untouched
    sys.path.insert(0, root)
    try:
        q = importlib.import_module("taming.modules.vqvae.quantize")
    finally:
        sys.path.remove(root)
    assert os.path.abspath(q.__file__) == os.path.join(root, QUANTIZE), q.__file__
    return q


class Capture:
    """During a forward: wrap torch.multinomial, F.softmax and F.cross_entropy (quantize.py looks them up as
    attributes of `torch` / `torch.nn.functional` at call time) and keep their inputs / outputs."""

    def __init__(self):
        self.rec = {}
        self.orig = {}

    def __enter__(self):
        rec = self.rec
        om, osm, oce = torch.multinomial, F.softmax, F.cross_entropy
        self.orig = dict(multinomial=om, softmax=osm, cross_entropy=oce)

        def multinomial(inp, num_samples, *a, **k):
            out = om(inp, num_samples, *a, **k)
            assert "anchor_idx" not in rec and num_samples == 1
            rec["anchor_probs"] = inp.detach().clone()
            rec["anchor_idx"] = out.detach().clone().view(-1)
            return out

        def softmax(inp, *a, **k):
            assert "d_t" not in rec
            rec["d_t"] = inp  # d.t(), a view of upstream's d (kept with its graph)
            return osm(inp, *a, **k)

        def cross_entropy(inp, target, *a, **k):
            out = oce(inp, target, *a, **k)
            assert "contra" not in rec
            rec["contra_logits"], rec["contra_target"], rec["contra"] = inp, target, out
            return out

        torch.multinomial, F.softmax, F.cross_entropy = multinomial, softmax, cross_entropy
        return self

    def __exit__(self, *exc):
        torch.multinomial = self.orig["multinomial"]
        F.softmax = self.orig["softmax"]
        F.cross_entropy = self.orig["cross_entropy"]


def neg_sq_dist(zf, E):
    """quantize.py:3593-3595 on detached inputs (recomputation for eval mode and the checks)."""
    return -(zf ** 2).sum(1, keepdim=True) - (E ** 2).sum(1) + 2 * torch.einsum("bd,dn->bn", zf, E.t())


def top2_gap(d, dim):
    t = d.topk(2, dim=dim).values
    return (t.select(dim, 0) - t.select(dim, 1)).min().item()


def call(q, z_in, seed, tag):
    """One upstream forward at the module's current mode; returns the recorded tensors."""
    E = q.embedding.weight
    r = {"codebook_before": E.detach().clone(), "embed_prob_before": q.embed_prob.clone()}
    z = z_in.clone().requires_grad_(True)
    torch.manual_seed(seed)
    with Capture() as cap:
        z_q, loss, (perplexity, encodings, indices) = q(z)
    c = cap.rec
    r.update(z=z_in.clone(), codebook_after=E.detach().clone(), embed_prob_after=q.embed_prob.clone(),
             z_q=z_q.detach().clone(), loss=loss.detach().clone(), perplexity=perplexity.detach().clone(),
             encodings=encodings.detach().clone(), indices=indices.detach().clone())
    zf = z_in.permute(0, 2, 3, 1).reshape(N, D)
    Eb = r["codebook_before"]
    d_re = neg_sq_dist(zf, Eb)
    zq_pre = Eb[indices]
    mse = torch.mean((zq_pre - zf) ** 2)
    r["loss_commit"], r["loss_codebook"] = BETA * mse, mse
    r["avg_probs"] = encodings.mean(0)
    assert torch.equal(indices, d_re.argmax(1)), tag
    assert torch.equal(r["z_q"], z_in + (zq_pre.view(B, H, W, D).permute(0, 3, 1, 2) - z_in)), tag

    # gradients, right after the forward (as loss.backward() in training: after the .data update)
    params = [z, E]
    if q.training:
        d = c["d_t"]._base
        assert d is not None and d.shape == (N, K)
        r["d"] = d.detach().clone()
        contra = c["contra"]
        r["loss_contra"], r["contra_logits"] = contra.detach().clone(), c["contra_logits"].detach().clone()
        assert torch.equal(c["contra_target"], torch.zeros(K, dtype=torch.long))
        r["contra_grad_d"] = torch.autograd.grad(contra, d, retain_graph=True)[0].clone()
        gz_c, gE_c = torch.autograd.grad(contra, params, retain_graph=True, allow_unused=True)
        assert gz_c is None, "the contrastive term reaches z"
        r["grad_codebook_contra"] = gE_c.clone()
        r["anchor_probs"], r["anchor_idx"] = c["anchor_probs"], c["anchor_idx"]
        r["anchor_feat"] = zf[r["anchor_idx"]]
        r["decay"] = torch.exp(-(r["embed_prob_after"] * K * 10) / (1 - 0.99) - 1e-3)
    else:
        assert not c, f"eval forward called {list(c)}"
        r["d"] = d_re
    gz, gE = torch.autograd.grad(loss, params, retain_graph=True)
    r["grad_z_loss"], r["grad_codebook_loss"] = gz.clone(), gE.clone()
    gz2, gE2 = torch.autograd.grad((z_q ** 2).sum(), params, allow_unused=True)
    assert gE2 is None, "z_q reaches the codebook"
    r["grad_z_zq2"], r["grad_codebook_zq2"] = gz2.clone(), torch.zeros(K, D)

    # ---- checks of the documented algorithm against upstream's values ----
    tol = dict(rtol=1e-5, atol=1e-6)
    assert torch.allclose(r["d"], d_re, **tol), tag
    exp_loss = r["loss_commit"] + r["loss_codebook"] + (r["loss_contra"] if q.training else 0)
    assert torch.allclose(r["loss"], exp_loss, **tol), (tag, r["loss"], exp_loss)
    r["loss_bitwise"] = torch.tensor(int(torch.equal(r["loss"], exp_loss)))
    eN = N * D
    g_commit = 2 * BETA * (zf - zq_pre) / eN
    assert torch.allclose(gz.permute(0, 2, 3, 1).reshape(N, D), g_commit, **tol), tag
    g_book = torch.zeros(K, D).index_add_(0, indices, 2 * (zq_pre - zf) / eN)
    assert torch.allclose(gz2, 2 * r["z_q"], **tol), tag
    if q.training:
        Ea = r["codebook_after"]
        # step 9/10 recomputed
        ep = torch.add(r["embed_prob_before"] * 0.99, r["avg_probs"], alpha=0.01)  # add_(alpha) is fused
        assert torch.allclose(r["embed_prob_after"], ep, rtol=1e-6, atol=0), tag
        assert torch.allclose(r["anchor_probs"], torch.softmax(d_re.t(), 1), **tol), tag
        new = Eb * (1 - r["decay"][:, None]) + r["anchor_feat"] * r["decay"][:, None]
        r["reinit_bitwise"] = torch.tensor(int(torch.equal(Ea, new)))
        r["embed_prob_bitwise"] = torch.tensor(int(torch.equal(r["embed_prob_after"], ep)))
        assert torch.allclose(Ea, new, rtol=1e-6, atol=1e-7), tag
        # step 11 recomputed
        srt = d_re.sort(0).values
        npos, nneg = max(1, int(N / K)), int(N / 2)
        logits = torch.cat([srt[-npos:].mean(0, keepdim=True), srt[:nneg]], 0).t() / 0.07
        assert torch.allclose(r["contra_logits"], logits, rtol=1e-5, atol=1e-4), tag
        assert torch.allclose(r["loss_contra"], F.cross_entropy(logits, torch.zeros(K, dtype=torch.long)), **tol)
        # the SURPRISE: the contrastive codebook gradient uses E_after in the -||e||^2 term
        G = r["contra_grad_d"]
        post = 2 * G.t() @ zf - 2 * G.sum(0)[:, None] * Ea
        pre = 2 * G.t() @ zf - 2 * G.sum(0)[:, None] * Eb
        r["grad_codebook_contra_pre"] = pre
        assert G.sum(0).abs().max() < 1e-6 * G.abs().max(), tag
        assert torch.allclose(r["grad_codebook_contra"], post, rtol=1e-4, atol=1e-5), tag
        r["grad_codebook_codebookpart"] = r["grad_codebook_loss"] - r["grad_codebook_contra"]
        assert torch.allclose(r["grad_codebook_codebookpart"], g_book, rtol=1e-4, atol=1e-6), tag
        r["surprise_max_abs"] = (post - pre).abs().max()
    else:
        assert torch.allclose(gE, g_book, **tol), tag
        assert torch.equal(r["codebook_after"], Eb) and torch.equal(r["embed_prob_after"], r["embed_prob_before"])
    r["gap_idx"] = torch.tensor(top2_gap(d_re, 1))
    assert r["gap_idx"] > 1e-5, (tag, "near tie in the nearest-code choice")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help=f"checkout of {upstream.REPOS[CVQ]} @{LG_COMMIT}")
    ap.add_argument("--out", default=os.path.join(FIXTURES, "cvq.safetensors"), help="output file")
    a = ap.parse_args()

    qmod = load_quantize(a.upstream)
    cls = qmod.CVQVectorQuantiser
    assert cls.__module__ == qmod.__name__ and cls.forward.__code__.co_filename == qmod.__file__
    torch.manual_seed(MODULE_SEED)
    q = cls(**SETTINGS)
    out = {"init.codebook": q.embedding.weight.detach().clone(), "init.embed_prob": q.embed_prob.clone()}

    g = torch.Generator().manual_seed(INPUT_SEED)
    z0 = Z_STD * torch.randn(B, D, H, W, generator=g)
    z1 = z0 + 0.5 * Z_STD * torch.randn(B, D, H, W, generator=g)  # a nearby batch: re-initialised codes get used
    z2 = Z_STD * torch.randn(B, D, H, W, generator=g)

    recs = {}
    q.train()
    recs["train0"] = call(q, z0, CALL_SEED + 0, "train0")
    recs["train1"] = call(q, z1, CALL_SEED + 1, "train1")
    q.eval()
    recs["eval"] = call(q, z2, CALL_SEED + 2, "eval")
    assert not q.init
    diag = {}
    for tag, r in recs.items():
        for k in ("gap_idx", "surprise_max_abs", "reinit_bitwise", "embed_prob_bitwise", "loss_bitwise"):
            if k in r:
                diag[f"{tag}.{k}"] = r.pop(k).item()
        out.update({f"{tag}.{k}": v.detach().clone() for k, v in r.items()})
    assert torch.equal(recs["train1"]["codebook_before"], recs["train0"]["codebook_after"])
    assert torch.equal(recs["eval"]["codebook_before"], recs["train1"]["codebook_after"])

    lines = {n: getattr(cls, n).__code__.co_firstlineno for n in ("__init__", "forward", "get_codebook_entry")}
    meta = {
        "upstream_repo": upstream.REPOS[CVQ], "upstream_commit": LG_COMMIT,
        "upstream_file": f"{QUANTIZE} (CVQVectorQuantiser, FeaturePool)", "upstream_lines": json.dumps(lines),
        "settings": json.dumps(SETTINGS), "decay": "0.99", "contrast_temperature": "0.07",
        "dims": json.dumps(dict(B=B, C=D, H=H, W=W, N=N, K=K, D=D, n_pos=max(1, int(N / K)), n_neg=int(N / 2))),
        "calls": "train0 (z0), train1 (z1) in training mode, consecutive; eval (z2) after them in eval mode",
        "seeds": f"module torch.manual_seed({MODULE_SEED}); torch.manual_seed({CALL_SEED}+c) right before call c "
                 f"(0 train0, 1 train1, 2 eval); inputs Generator({INPUT_SEED}): z0 = {Z_STD}*randn, "
                 f"z1 = z0 + {Z_STD / 2}*randn, z2 = {Z_STD}*randn",
        "anchor_idx": "int64 (K,), torch.multinomial(softmax(d.t(), 1), 1).view(-1) captured: replay it",
        "gradients": "taken right after each forward, i.e. after the in-place codebook re-initialisation",
        "diagnostics": json.dumps(diag), "dtype": "float32", "torch": torch.__version__,
        "script": "reference/cvq_fixtures.py",
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    st_save(out, a.out, meta)
    back = st_load(a.out)
    assert set(back) == set(out) and all(torch.equal(back[k], out[k].detach().cpu()) for k in out)

    print(f"wrote {len(out)} tensors, {os.path.getsize(a.out)} bytes to {os.path.normpath(a.out)} "
          f"({upstream.cite(CVQ, QUANTIZE)}, torch {torch.__version__}); upstream lines {lines}")
    for tag, r in recs.items():
        used = torch.bincount(r["indices"], minlength=K)
        print(f"{tag}: loss {r['loss'].item():.6f} (commit {r['loss_commit'].item():.6f}, codebook "
              f"{r['loss_codebook'].item():.6f}" + (f", contra {r['loss_contra'].item():.6f}" if "loss_contra" in r
                                                    else "") + f"), perplexity {r['perplexity'].item():.4f}")
        print(f"  usage {used.tolist()}")
        if "anchor_idx" in r:
            print(f"  anchor_idx {r['anchor_idx'].tolist()}")
            print(f"  decay {[f'{x:.3g}' for x in r['decay'].tolist()]}")
            print(f"  |grad_E contra| max {r['grad_codebook_contra'].abs().max().item():.3e}; "
                  f"|codebook part| max {r['grad_codebook_codebookpart'].abs().max().item():.3e}")
    print(f"diagnostics {diag}")


if __name__ == "__main__":
    main()
