# Source me (`. scripts/env.sh`): the environment cargo needs to build against the project's own
# libtorch, the one inside the PyPI `torch` wheel in .venv (tch's LIBTORCH_USE_PYTORCH mode).
# Built binaries carry libtorch's path (rpath), so running them needs none of this.
TESSERA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TESSERA_ROOT
export VIRTUAL_ENV="$TESSERA_ROOT/.venv"
case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
export LIBTORCH_USE_PYTORCH=1
# torch version the project is pinned to (tch =0.24.0 expects exactly this one).
export TESSERA_TORCH_VERSION=2.11.0
