#!/usr/bin/env bash
# Set up .venv from scratch if needed, then train a small StyleGAN2 with the dynamically
# masked discriminator on the bundled Fashion-MNIST images (CPU or GPU), ending with a
# network snapshot, image grids and an FID. Extra arguments go to train.py and override
# the defaults below, e.g. bash scripts/demo.sh --kimg=32 --outdir=runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh

.venv/bin/python train.py \
    --outdir=training-runs --cfg=stylegan2 --data=data/fashion-mnist-32x32.zip \
    --gpus=1 --batch=16 --gamma=0.1 --cbase=2048 --cmax=128 --map-depth=2 --workers=1 \
    --dmd=1 --dmd-interval=1 --kimg=8 --tick=1 --snap=4 --metrics=fid500 --device=auto \
    "$@"

run_dir="$(ls -d training-runs/*/ | sort | tail -n 1)"
echo
echo "Done. Results are in $run_dir:"
ls "$run_dir"
