"""Minimal safetensors writer and reader (no numpy, no safetensors package): 8-byte little-endian header
length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw little-endian bytes."""
import json
import struct

import torch

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
           torch.float16: "F16", torch.bfloat16: "BF16", torch.bool: "BOOL"}


def save(tensors: dict, path: str, metadata: dict = None) -> None:
    """Write `tensors` (names sorted) and, if given, a `__metadata__` entry with sorted keys, so that
    the bytes are reproducible (the safetensors package writes metadata in hash-map order)."""
    header, blobs, offset = ({"__metadata__": dict(sorted(metadata.items()))} if metadata else {}), [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = bytes(t.flatten().view(torch.uint8).tolist()) if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


_KINDS = {v: k for k, v in _DTYPES.items()}


def load(path: str) -> dict:
    """Every tensor of a safetensors file written by `save` (or any little-endian safetensors file
    of the dtypes above), in header order."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = bytearray(data[8 + n + lo:8 + n + hi])
        dtype = _KINDS[info["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out
