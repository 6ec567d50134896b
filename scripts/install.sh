#!/usr/bin/env bash
# Install AIST and everything it needs into ./.venv (idempotent: a second run is quick).
# torch/torchvision are pinned here (the versions this project is tested with); the package
# metadata itself accepts any torch 2.x.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
"${PIP[@]}" -e ".[plugins,test,fidelity,tensorboard,ray,coco]" -e examples/aist-edge-loss
echo "aist installed in .venv ($(.venv/bin/aist --version))"
