#!/usr/bin/env bash
# Validate and time the CUDA paths on a machine with a GPU, in one run: build the kernels,
# run every CUDA test, then time training steps with --ops=ref, --ops=cuda and --compile=1,
# and the layer choices in float32 and float16. Needs a CUDA build of torch, ninja and nvcc.
# Everything goes to $OUT (default gpu-check/); a failing step is logged and the rest still
# runs. It has not run yet (no GPU so far); the estimate is under 10 minutes on one H200.
# Afterwards set VALIDATED in torch_utils/custom_ops.py only for the kernels whose tests
# passed, and record the figures in docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
python="${PYTHON:-python}"
export PYTHONUNBUFFERED=1

step() {  # step NAME COMMAND...: run COMMAND, log its output to $out/NAME.txt, note its status.
    local name="$1"
    shift
    echo "== $name: $*" | tee -a "$out/summary.txt"
    local start=$SECONDS
    "$@" >"$out/$name.txt" 2>&1
    echo "   exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

step machine sh -c "nvidia-smi; $python -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"
step cuda-tests "$python" -m pytest -q -p no:cacheprovider -rs \
    tests/test_custom_ops.py tests/test_calc_metrics.py
for ops in ref cuda; do
    step "step-time-$ops" "$python" benchmarks/step_time.py --device=cuda --ops="$ops" \
        --configs=sg2-64,sg3t-32,sg3r-32 --batch=32 --repeats=10 --warmup=3
done
step step-time-compile "$python" benchmarks/step_time.py --device=cuda --ops=cuda --compile=1 \
    --configs=sg2-64,sg3t-32 --batch=32 --repeats=10 --warmup=3
step dmd-overhead "$python" benchmarks/step_time.py --device=cuda --ops=cuda \
    --configs=sg2-64 --batch=32 --dmd-overhead --repeats=20 --warmup=2
step layers "$python" benchmarks/layers.py --device=cuda --repeats=20
cat "$out/summary.txt"
