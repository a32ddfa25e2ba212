"""A prediction job from start to publish, whichever engine scores it.

    check the output → remove dead jobs' staging → engine writes into staging
      → summary.json → one rename publishes the output
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

from features.atomic_files import replace_directory
from pipelines.prediction.output import check_output, remove_abandoned_staging, staging_dir, write_summary

_LOG = logging.getLogger(__name__)


def run_prediction(output: str | Path, engine: Callable[[Path], dict], overwrite: bool = False, **about) -> dict:
    """Runs `engine(staging)` (it writes the shards and returns the counts) and publishes the output atomically.

    `about` (the model version, the input, ...) is added to the summary.
    """
    output = Path(output).absolute()
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(output)
    staging = staging_dir(output)
    staging.mkdir()
    try:
        found = {**engine(staging), **about}
        write_summary(staging, found)
        check_output(output, overwrite)  # again: another job may have published it meanwhile
        replace_directory(staging, output)  # an old output is swapped out whole, never merged
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _LOG.info("published %s", output)
    return found
