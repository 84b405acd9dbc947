#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv.
#
# The order matters and is why this is a script rather than one `pip install`:
#  1. torch/torchvision first, pinned: every later package builds or imports against them.
#  2. basicsr is sdist-only and lists torch as a *build* requirement, so it must be
#     built without isolation, after torch. basicsr, facexlib, gfpgan and realesrgan
#     are installed with --no-deps because they require `opencv-python`, which would
#     overwrite the headless OpenCV build; their real runtime needs are declared in
#     pyproject.toml instead.
#  3. gifstream itself (editable) with its dev extras.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${GIFSTREAM_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
# This machine's pip configuration names package indexes that may not exist locally;
# drop pip's warnings about them so real errors stay visible.
pip_install() {
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q "$@" \
    2> >(grep -v "^WARNING: Location '" >&2)
}

log "installing build tools"
pip_install --upgrade pip setuptools wheel
log "installing torch 2.14.1 / torchvision 0.29.1 (large; first run only)"
pip_install torch==2.14.1 torchvision==0.29.1
log "installing model libraries without their opencv-python dependency"
pip_install --no-build-isolation --no-deps -r "$root/requirements/models-nodeps.txt"
log "installing gifstream and its dependencies"
pip_install -e "$root[dev]"
log "compiling the GIF encoder's, the warp's, the blend's and E_warp's loops (first run only)"
"$venv/bin/python" -c "from gifstream.io.gif_sink import compile_encoder; compile_encoder()
from gifstream.motion import warp; warp.prepare()
from gifstream.stabilize import blend; blend.prepare()
from gifstream.metrics import warp_kernel; warp_kernel.prepare()"
log "environment ready"
