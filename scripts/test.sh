#!/usr/bin/env bash
# The test suite, including the small end-to-end runs marked `slow`.
source "$(dirname "$0")/env.sh"
python -m pytest -q "$@"
