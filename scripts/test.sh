#!/usr/bin/env bash
# Runs every test. Sets up first if needed (idempotent, quick when already done).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-run
. scripts/env.sh
# Size limits (README, "Layout"): no file over 600 lines, no function over 80, tests aside.
python3 scripts/check_sizes.py
# Tests share the release profile with the binary so libtorch's C++ glue compiles once.
cargo test --release --workspace "$@"
