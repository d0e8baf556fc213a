"""Files written by PyTorch's own `torch.save`, for the tests of Tessera's pickle-free reader
(crates/tessera-core/src/torch_file).

Run from the repository root with the project's venv:
    .venv/bin/python reference/torch_files.py
writes crates/tessera-torchfile/tests/fixtures/
    mixed.pth          an OrderedDict state_dict with every storage type Tessera reads, views that
                       share a storage (transpose, offset slice), a 0-d tensor, an empty tensor and an
                       nn.Parameter
    mixed.safetensors  the same tensors as contiguous copies: what the reader must produce
    evil.pth           a tensor next to an object whose unpickling would run `os.system(...)` (touch a
                       sentinel file); the reader must return the tensor and run nothing

    .venv/bin/python reference/torch_files.py --taming-ckpt OUT.ckpt
writes a PyTorch-Lightning-style checkpoint of the TE-VQGAN test model whose weights are the `param.*`
tensors of crates/tessera-models/tests/fixtures/vqgan_te.safetensors (written by
reference/upstream_vqgan_fixtures.py from TE-VQGAN's own VQModel; read back here, so this needs no
upstream checkout):
{'epoch', 'global_step', 'pytorch-lightning_version', 'state_dict' (VQModel keys plus one
`loss.perceptual_loss.*` key that Tessera has no slot for), 'optimizer_states' (Adam moments),
'lr_schedulers', 'hyper_parameters' (an argparse.Namespace), 'callbacks'}.
"""
import argparse
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_io import load, save  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "crates", "tessera-torchfile", "tests", "fixtures")
SENTINEL = "/tmp/tessera-torch-file-test-pwned"


class RunsCode:
    """Unpickling this with Python's pickle would run `touch SENTINEL`."""

    def __reduce__(self):
        return (os.system, (f"touch {SENTINEL}",))


def mixed():
    torch.manual_seed(0)
    w = torch.randn(3, 4)
    sd = OrderedDict()
    sd["w"] = w
    sd["w_t"] = w.t()  # same storage, strides (1, 4)
    sd["w_slice"] = w[1:, 2:]  # same storage, offset 6
    sd["half"] = torch.randn(2, 3).half()
    sd["bf16"] = torch.randn(5).bfloat16()
    sd["double"] = torch.randn(2, 2).double()
    sd["long"] = torch.arange(-3, 3).reshape(2, 3)
    sd["int"] = torch.tensor([7, -8], dtype=torch.int32)
    sd["byte"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(4))
    sd["nested.deep"] = torch.ones(1)
    expected = {k: v.detach().clone().contiguous() for k, v in sd.items() if v.numel() > 0}
    return sd, expected


def taming_ckpt(path):
    fixture = os.path.join(os.path.dirname(__file__), "..", "crates", "tessera-models", "tests", "fixtures",
                           "vqgan_te.safetensors")
    state = OrderedDict((k[len("param."):], v) for k, v in load(fixture).items() if k.startswith("param."))
    params = [torch.nn.Parameter(v.clone()) for v in state.values()]
    # lr 0: Adam fills its moments and leaves the weights as they are.
    torch.manual_seed(0)
    opt = torch.optim.Adam(params, lr=0.0, betas=(0.5, 0.9))
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    for (k, v), p in zip(state.items(), params):
        assert torch.equal(v, p.detach()), k
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.rand(1, 64, 1, 1)
    ckpt = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "hyper_parameters": argparse.Namespace(base_learning_rate=4.5e-6, n_embed=24),
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5)}},
    }
    torch.save(ckpt, path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--taming-ckpt":
        taming_ckpt(sys.argv[2])
        sys.exit(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    sd, expected = mixed()
    torch.save(sd, os.path.join(OUT_DIR, "mixed.pth"))
    save(expected, os.path.join(OUT_DIR, "mixed.safetensors"))
    torch.save({"weight": torch.arange(4.0), "payload": RunsCode()}, os.path.join(OUT_DIR, "evil.pth"))
    print(f"wrote mixed.pth, mixed.safetensors, evil.pth to {os.path.normpath(OUT_DIR)} (torch {torch.__version__})")
