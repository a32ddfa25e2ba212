#!/usr/bin/env bash
# The quick start: sample logs → Beam/tf.Transform → train → evaluate → export → score raw rows.
source "$(dirname "$0")/env.sh"
recsys run --config data_samples/synthetic.yaml "$@"
