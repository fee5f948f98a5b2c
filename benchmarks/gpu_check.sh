#!/usr/bin/env bash
# GPU check for a machine with a CUDA GPU (`make gpu-check`, or `bash benchmarks/gpu_check.sh [OUT_DIR]`).
#
# 1. device="auto" picks CUDA, and a short fit trains there in fp32 and in bf16 (autocast), with the
#    forward pass really in bfloat16 and BatchNorm statistics kept in fp32;
# 2. the smoke study (every notebook, smoke profile) runs on CUDA against a temporary MLflow store;
# 3. the speed benchmark's rows on the GPU in both precisions (benchmarks/speed.py --device cuda).
#
# Nothing else in the project assumes a GPU: on a machine without one this script says so and exits 1.
# Output: OUT_DIR (default: a temporary folder) gets check.txt, smoke.txt and speed.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT_DIR=${1:-${OUT:-$(mktemp -d)}}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export MLFLOW_TRACKING_URI="sqlite:///$tmp/mlflow.db" HYPERTUNE_FIGURES_DIR="$tmp/figures" HYPERTUNE_STATE_DIR="$tmp/state"

echo "== 1. device=auto and both precisions on CUDA" | tee "$OUT_DIR/check.txt"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT_DIR/check.txt"
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to torch: this check needs one (the rest of the project runs on the CPU)")
from lib.config import TrialConfig
from lib.data import load_splits
from lib.model import build_model
from lib.train import fit, resolve_device

device = resolve_device("auto")
assert device.type == "cuda", f'device="auto" picked {device}, not CUDA'
print(f"device=auto -> {device} ({torch.cuda.get_device_name()}), torch {torch.__version__}")
splits = load_splits(train_subset=4000, val_subset=1000)
for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    config = TrialConfig.from_flat({"epochs": 2, "norm_type": "batch", "precision": precision})
    torch.manual_seed(0)
    model = build_model(config.model, splits.input_shape, splits.n_classes)
    seen = []
    model.blocks[0][0].register_forward_hook(lambda _m, _i, out: seen.append((out.dtype, out.device.type)))
    result = fit(model, splits.train, splits.val, config.train, device="auto", progress=False)
    assert result.status == "finished", result.failure_reason
    assert set(seen) == {(dtype, "cuda")}, set(seen)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var.dtype == torch.float32 and bn.running_var.device.type == "cuda"
    print(f"{precision}: forward in {dtype} on cuda, val_accuracy {result.history[-1].val_accuracy:.4f}, "
          f"{result.images_per_second:,.0f} img/s")
print("OK")
EOF

echo "== 2. the smoke study on CUDA" | tee "$OUT_DIR/smoke.txt"
HYPERTUNE_PROFILE=smoke timeout 1800 "$PY" -m lib study --profile smoke --output-dir "$tmp/notebooks" 2>&1 \
  | tee -a "$OUT_DIR/smoke.txt"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT_DIR/smoke.txt"
from lib import tracking
runs = [run for exp in tracking.client().search_experiments() for run in tracking.find_runs(exp.experiment_id)]
print(f"smoke study: {len(runs)} runs in the temporary store")
assert runs, "the smoke study logged no runs"
EOF

echo "== 3. the benchmark rows on the GPU, fp32 and bf16" | tee "$OUT_DIR/speed.txt"
timeout 1800 "$PY" benchmarks/speed.py --device cuda 2>&1 | tee -a "$OUT_DIR/speed.txt"
echo "GPU check done: $OUT_DIR"
