#!/usr/bin/env bash
# Validate and time the CUDA paths on a machine with a GPU, in one run: build the kernels,
# run every CUDA test, then time training steps with --ops=ref, --ops=cuda and --compile=1,
# DMD's overhead, and the layer choices in float32 and float16. Needs a CUDA build of torch,
# ninja and nvcc. Each step has a time limit (seconds in brackets below, 575 s in all), and
# a failing or timed-out step is logged while the rest still runs. Everything goes to $OUT
# (default ./gpu-check). It has not run yet, because no GPU was available so far.
# Afterwards set VALIDATED in torch_utils/custom_ops.py only for the kernels whose tests
# passed, and record the figures in docs/benchmarks.md.
set -uo pipefail
out="$(realpath -m "${OUT:-gpu-check}")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$out"
python="${PYTHON:-python}"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, log to $out/NAME.txt.
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee -a "$out/summary.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    echo "   exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

step machine 15 sh -c "nvidia-smi; $python -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"
# [210] The first CUDA test builds the kernels with nvcc.
step cuda-tests 210 "$python" -m pytest -q -p no:cacheprovider -rs \
    tests/test_custom_ops.py tests/test_calc_metrics.py
# [2 x 60] Whole steps of StyleGAN2 64x64 and StyleGAN3-T 32x32 at batch 32.
for ops in ref cuda; do
    step "step-time-$ops" 60 "$python" benchmarks/step_time.py --device=cuda --ops="$ops" \
        --configs=sg2-64,sg3t-32 --batch=32 --repeats=5 --warmup=2
done
# [150] Inductor compiles every forward first.
step step-time-compile 150 "$python" benchmarks/step_time.py --device=cuda --compile=1 \
    --configs=sg2-64 --batch=32 --repeats=5 --warmup=2
# [40] 10 alternating pairs of a baseline and a DMD step.
step dmd-overhead 40 "$python" benchmarks/step_time.py --device=cuda --ops=cuda \
    --configs=sg2-64 --batch=32 --dmd-overhead --repeats=10 --warmup=2
# [40]
step layers 40 "$python" benchmarks/layers.py --device=cuda --repeats=10
cat "$out/summary.txt"
