#!/bin/sh
# Installs the exporter from a source tree into a fresh virtual environment, as the Dockerfile's
# build stage does (it runs this very script), so that CI can rehearse the image's install
# without a Docker engine: tests/test_dockerfile.py runs it into a temporary directory.
#
#   sh docker/install-venv.sh SOURCE_DIR VENV_DIR
set -eu
src=$1
venv=$2
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet "$src"
# Nothing of the build is needed at run time: drop pip and bytecode caches from the venv.
"$venv/bin/pip" uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
"$venv/bin/sccm-package-exporter" --version
