"""Import the upstream taming-transformers / TE-VQGAN modules from a checkout, for the fixture scripts.

Nothing of upstream is copied into this repository: the scripts take the path of a checkout and
import the modules from it. The pinned commits, and the git blob id of every upstream file the
scripts import (checked on import, so a checkout at another commit is refused):

    CompVis/taming-transformers  3ba01b241669f5ade541ce990f7650a3b8f65318
    wcshin-git/TE-VQGAN          248f88302de796170176d76b5a00ce3c261a6cff

A checkout without git history is fine, e.g. `git --git-dir=MIRROR archive <commit> | tar -x -C DIR`
(only the .py files are needed).

Both repositories name their package `taming` (a namespace package, no __init__.py), so they are
imported one after the other: `load(root, ...)` forgets any `taming.*` already imported, puts `root`
first on sys.path, imports, and takes `root` off again; the module objects it returns stay usable.

Modules that upstream imports but the fixtures never use are stubbed in sys.modules instead of being
installed (`install_stubs`): pytorch_lightning (LightningModule -> torch.nn.Module), taming's
`main.instantiate_from_config` (the loss module is not part of a fixture: it returns nn.Identity),
torchvision (LPIPS's VGG16 needs ImageNet weights that cannot be fetched here; the fixtures use
upstream's LPIPS head on Tessera's own backbone, see upstream_vqgan_fixtures.py), PIL, tqdm (the
identity on iterables) and requests. numpy is real: TE's BlurPool builds its filter with it
(`.venv/bin/pip install numpy`).
"""
import hashlib
import importlib
import os
import sys
import types

import torch

TAMING_COMMIT = "3ba01b241669f5ade541ce990f7650a3b8f65318"
TE_VQGAN_COMMIT = "248f88302de796170176d76b5a00ce3c261a6cff"

# git blob ids (`git ls-tree -r <commit>`) of the files the fixture scripts import.
BLOBS = {
    "taming": {
        "taming/models/vqgan.py": "a6950baa5f739111cd64c17235dca8be3a5f8037",
        "taming/modules/diffusionmodules/model.py": "d3a5db6aa2ef915e270f1ae135e4a9918fdd884c",
        "taming/modules/discriminator/model.py": "2aaa3110d0a7bcd05de7eca1e45101589ca5af05",
        "taming/modules/losses/__init__.py": "d09caf9eb805f849a517f1b23503e1a4d6ea1ec5",
        "taming/modules/losses/lpips.py": "a7280447694ffc302a7636e7e4d6183408e0aa95",
        "taming/modules/util.py": "9ee16385d8b1342a2d60a5f1aa5cadcfbe934bd8",
        "taming/modules/vqvae/quantize.py": "d75544e41fa01bce49dd822b1037963d62f79b51",
        "taming/util.py": "06053e5defb87977f9ab07e69bf4da12201de9b7",
    },
    "te-vqgan": {
        "taming/models/vqgan.py": "745bf9969d2cefc2f42b631fb546d15b12bd280d",
        "taming/modules/diffusionmodules/model.py": "9eb6cca926bcaf57d842241cd89e8a7da621b80d",
        "taming/modules/discriminator/model.py": "b098679dbff2f92eec45017bedd2ca69d6d3b8ea",
        "taming/modules/losses/__init__.py": "d09caf9eb805f849a517f1b23503e1a4d6ea1ec5",
        "taming/modules/losses/lpips.py": "9335bfd75f1730674b2415e3521964795b10dc57",
        "taming/modules/util.py": "5e263302490deb5a3ebc8b431641cffcc5aa03f4",
        "taming/modules/vqvae/quantize.py": "5878ffec16060f9ae63b51e23880292f93160efa",
        "taming/util.py": "06053e5defb87977f9ab07e69bf4da12201de9b7",
    },
}
COMMITS = {"taming": TAMING_COMMIT, "te-vqgan": TE_VQGAN_COMMIT}
REPOS = {"taming": "CompVis/taming-transformers", "te-vqgan": "wcshin-git/TE-VQGAN"}


def git_blob_id(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_checkout(root, which):
    """Refuse a checkout whose files differ from the pinned commit's."""
    bad = []
    for rel, blob in BLOBS[which].items():
        p = os.path.join(root, rel)
        if not os.path.isfile(p):
            bad.append(f"{rel}: missing")
        elif git_blob_id(p) != blob:
            bad.append(f"{rel}: blob {git_blob_id(p)}, pinned {blob}")
    if bad:
        raise SystemExit(f"{root} is not {REPOS[which]} @ {COMMITS[which]}:\n  " + "\n  ".join(bad))


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def install_stubs():
    class _NoTorchvision:
        def __getattr__(self, name):
            raise RuntimeError("torchvision is stubbed out: upstream's VGG16 (ImageNet weights) is not used")

    stubs = {
        "pytorch_lightning": _module("pytorch_lightning", LightningModule=torch.nn.Module),
        "main": _module("main", instantiate_from_config=lambda config: torch.nn.Identity()),
        "torchvision": _module("torchvision", models=_NoTorchvision()),
        "PIL": _module("PIL", Image=None),
        "tqdm": _module("tqdm", tqdm=lambda it=None, *a, **k: it),
        "requests": _module("requests"),
    }
    for name, mod in stubs.items():
        sys.modules.setdefault(name, mod)


def load(root, which, *names):
    """Import `names` (e.g. 'taming.modules.vqvae.quantize') from the checkout `root` of `which`
    ('taming' or 'te-vqgan') after checking it against the pin; returns the modules in order."""
    root = os.path.abspath(root)
    check_checkout(root, which)
    install_stubs()
    for k in [k for k in sys.modules if k == "taming" or k.startswith("taming.")]:
        del sys.modules[k]
    sys.path.insert(0, root)
    try:
        mods = [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(root)
    for m in mods:
        assert os.path.abspath(m.__file__).startswith(root + os.sep), f"{m.__name__} came from {m.__file__}"
    return mods


def cite(which, rel):
    """`owner/repo/path@commit` for docstrings and printed provenance."""
    return f"{REPOS[which]}/{rel}@{COMMITS[which][:7]}"
