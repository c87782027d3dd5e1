# Source this (`source scripts/env-gpu.sh`) to run ltre on the GPU: points ONNX Runtime at the
# CUDA build that scripts/setup.sh installs on a GPU machine, and the dynamic loader at the CUDA
# libraries next to it (ORT's CUDA provider finds them only through LD_LIBRARY_PATH). Build with
# `--features cuda` and ask for `Device::Cuda` (`--device cuda` in ltre-cli where offered).
# Without that directory it changes nothing and says so.
_ltre_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_ltre_gpu="${LTRE_ORT_GPU_DIR:-$_ltre_root/.ltre/onnxruntime-gpu}"
if [ -f "$_ltre_gpu/libonnxruntime.so" ]; then
  export ORT_DYLIB_PATH="$_ltre_gpu/libonnxruntime.so"
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$_ltre_gpu:"*) ;;
    *) export LD_LIBRARY_PATH="$_ltre_gpu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
  echo "env-gpu: ORT_DYLIB_PATH=$ORT_DYLIB_PATH" >&2
else
  echo "env-gpu: $_ltre_gpu has no ONNX Runtime GPU build (run scripts/setup.sh on a GPU machine); nothing set" >&2
fi
unset _ltre_root _ltre_gpu
