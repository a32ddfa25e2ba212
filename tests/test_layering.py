"""The packages depend on each other only as DESIGN.md allows; checked on what a fresh interpreter loads."""
import subprocess
import sys

import pytest

LOADED = "import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {forbidden!r}))"


def _top_packages_loaded(modules: list[str], forbidden: set[str]) -> list[str]:
    code = LOADED.format(modules=", ".join(modules), forbidden=forbidden)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return eval(result.stdout.strip().splitlines()[-1])  # a printed list of names


@pytest.mark.parametrize("modules, forbidden", [
    # model layers and the ranker: no I/O stack, no preprocessing, no serving or CLI
    (["recsys.layers", "recsys.models.ranker"], {"tensorflow_transform", "apache_beam", "pipelines", "serving"}),
    # evaluation and serving never import the pipeline (the CLI hands evaluation its reader)
    (["recsys.evaluation.beam_evaluation", "recsys.evaluation.evaluate", "serving.export", "serving.standin.server"],
     {"pipelines"}),
    # the config, artifacts and padding contract import no other package of ours
    (["features.config", "features.artifacts", "features.padding"], {"pipelines", "recsys", "serving"}),
])
def test_imports_follow_the_layering(modules, forbidden):
    assert _top_packages_loaded(modules, forbidden) == []
