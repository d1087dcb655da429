#!/usr/bin/env bash
# Wheels of what lit_i2v needs beyond an image that already holds torch, torchvision, lightning, timm and
# torchmetrics (the lent GPU machines' image: Python 3.12, no network), for `launch/gpu/checks.sh` to install there.
# Run here, where pip reaches the package registries:
#   bash launch/gpu/fetch_wheels.sh [DIR=.whl] [PYTHON_VERSION=3.12]
# DIR is git-ignored (.git/info/exclude) and travels with the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.whl}
py=${2:-3.12}
grep -qxF "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
mkdir -p "$dir"
# the versions this project's CI installs, pure Python or built for manylinux x86-64
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d "$dir" \
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 omegaconf==2.4.0 \
  decord==0.6.0 av==18.1.0 ftfy==6.3.1 wcwidth==0.7.0
du -sh "$dir"
