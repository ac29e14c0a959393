#!/usr/bin/env bash
# Builds .gpu-site.tar.gz in the repository root: the Python packages an offline GPU machine with a
# stock CUDA PyTorch image lacks (Unsloth and unsloth_zoo 2026.10.9, bitsandbytes trimmed to CUDA 13.0,
# TRL 1.15, datasets 4.x and their small dependencies), as wheels installed for Python 3.12 (~13 MB packed).
# Run it where PyPI is reachable; it never installs anything into this machine's environment.
#
#   bash bench/gpu_site.sh                      # from anywhere in the repository; git-ignores the archive
#   on the GPU machine (see the README's GPU section):
#     tar xzf .gpu-site.tar.gz -C /tmp
#     export PYTHONPATH=/tmp/gpu-site:$PWD HF_HUB_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
#
# GPU_SITE_PYTHON (default 3.12) and GPU_SITE_CUDA (default 130: the bitsandbytes library kept) match the
# target image; EXTRA_GPU_PKGS adds packages. That image is expected to bring torch (CUDA), transformers 5.17,
# torchvision, peft 0.21, accelerate, pandas, pyarrow, matplotlib and seaborn: Unsloth 2026.10.9 pins
# transformers <= 5.17, trl <= 1.15 and datasets < 5, which is why those versions are used.
set -euo pipefail
cd "$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
out=.gpu-site.tar.gz
python_version=${GPU_SITE_PYTHON:-3.12}
cuda=${GPU_SITE_CUDA:-130}
tmp=$(mktemp -d); dest=$tmp/gpu-site
trap 'rm -rf "$tmp"' EXIT
grep -qxF "/$out" .git/info/exclude 2>/dev/null || echo "/$out" >> .git/info/exclude
plat=(--python-version "$python_version" --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform any)
pkgs="unsloth==2026.10.9 unsloth_zoo==2026.10.9 bitsandbytes==0.50.2 trl==1.15.0 datasets==4.8.4 dill multiprocess
tyro docstring-parser shtab typeguard cut_cross_entropy msgspec torchao ${EXTRA_GPU_PKGS:-}"
for p in $pkgs; do python3 -m pip download -q --no-deps "${plat[@]}" -d "$tmp/whl" "$p"; done
python3 -m pip install -q --no-deps --no-compile --target "$dest" "${plat[@]}" "$tmp"/whl/*.whl
# Keep the archive small: no web UI, no console scripts, bitsandbytes for one CUDA version only.
rm -rf "$dest/studio" "$dest/bin"
find "$dest/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name "*cuda$cuda.so" ! -name '*cpu.so' -delete
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
tar czf "$out" -C "$tmp" gpu-site
du -h "$out"
