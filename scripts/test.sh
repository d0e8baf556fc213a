#!/usr/bin/env bash
# Runs every test. Sets up first if needed (idempotent, quick when already done).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-run
. scripts/env.sh
# Tests share the release profile with the binary so libtorch's C++ glue compiles once.
cargo test --release --workspace "$@"
