#!/usr/bin/env bash
# Idempotent set-up of the Ray Data embedding pipeline (distributed/embed_ray.py): a virtual
# environment at .ltre/venv-ray with pinned Ray Data, ONNX Runtime (the GPU build when
# nvidia-smi sees a GPU), tokenizers, pyarrow and numpy. A second run is a no-op in seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LTRE_RAY_VENV:-$root/.ltre/venv-ray}"

RAY_VERSION=2.60.0
ORT_VERSION=1.31.1
TOKENIZERS_VERSION=0.23.3
PYARROW_VERSION=26.0.1
NUMPY_VERSION=2.3.5

ort_package=onnxruntime
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  ort_package=onnxruntime-gpu
fi
packages=(
  "ray[data]==$RAY_VERSION"
  "$ort_package==$ORT_VERSION"
  "tokenizers==$TOKENIZERS_VERSION"
  "pyarrow==$PYARROW_VERSION"
  "numpy==$NUMPY_VERSION"
)
# The stamp names exactly what was installed: a change of pins (or of GPU) reinstalls.
stamp="$venv/.ltre-installed"
want="${packages[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup-ray: ok ($venv)"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    # Debian's python3 without ensurepip: install python3-venv once.
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
fi
echo "setup-ray: installing ${packages[*]} into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${packages[@]}"
echo "$want" > "$stamp"
echo "setup-ray: ok ($venv)"
