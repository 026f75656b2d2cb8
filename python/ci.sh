#!/usr/bin/env bash
# Builds the Python package into a fresh virtual environment and runs its test suite: what CI
# runs (as root, on a clean clone, with CI=true). Needs python3 (3.9 or later, with venv),
# cargo, and PyPI for maturin and pytest. Under CI the Rust interchange tests fail, rather than
# skip, if cargo is missing.
set -euo pipefail

package="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT

echo "== python/: building spillq into a fresh virtual environment ($("$python" --version))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package" pytest

echo "== python/: pytest"
cd "$package"
"$venv/bin/python" -m pytest -q
