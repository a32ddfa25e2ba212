"""Public benchmark recipes: `recsys datasets prepare NAME --source DIR --out DIR`.

Each recipe turns a dataset's published files (which the user downloads; the
project cannot) into the project's input files plus a ready config, following
the protocol of the paper that made the dataset a multi-task benchmark.
"""
from __future__ import annotations

import importlib
import inspect

from pipelines.recipes.source_files import RecipeError

# dataset name -> module with NAME, LAYOUT and prepare(source_dir, out_dir, **options)
RECIPES = {
    "census-income": "pipelines.recipes.census_income",
    "ali-ccp": "pipelines.recipes.ali_ccp",
    "aliexpress": "pipelines.recipes.aliexpress",
}


def prepare(name: str, source_dir, out_dir, **options) -> dict:
    """Runs the named recipe with the options given (None means not given); refuses options it does not take."""
    if name not in RECIPES:
        raise RecipeError(f"unknown dataset '{name}'; recipes exist for: {', '.join(RECIPES)}")
    recipe = importlib.import_module(RECIPES[name])
    given = {key: value for key, value in options.items() if value is not None}
    taken = inspect.signature(recipe.prepare).parameters
    stray = sorted(key for key in given if key not in taken)
    if stray:
        raise RecipeError(f"dataset '{name}' takes no option {', '.join('--' + key for key in stray)}")
    return recipe.prepare(source_dir, out_dir, **given)
