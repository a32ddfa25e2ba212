"""UCI Census-Income (KDD) as the MMoE paper uses it (Ma et al., KDD 2018, §5.2).

Source: `census-income.data` (199,523 rows) and `census-income.test` (99,762
rows) from the UCI archive (plain or gzip), headerless, 42 comma-separated
values per line written as ', ' (the column order of `census-income.names`).

Protocol: the official training file is the training split; the official test
file is halved at random into eval and test, with seed `HALVING_SEED` so every
run halves it the same way. Two binary tasks: income above 50K (the last
column, ' 50000+.' against ' - 50000.') and never married (marital status ==
'Never married'). The marital-status column, the income column and `instance
weight` (a sampling weight the UCI notes say must not be used by classifiers)
are never written to the output, so no later config edit can make them
features. Values are written stripped; '?' (not known) stays a category value.

Memory: the training file streams one line at a time; the test file's 99,762
rows are held once to draw the random halves (283 MB peak, most of it those rows as
Python lists; 6.4 s on the UCI files, benchmarks/results/census_recipe.md).
"""
from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from pipelines.recipes.outputs import SplitWriter, summary, write_ready_config
from pipelines.recipes.source_files import Rejected, data_lines, find_source_file
from pipelines.validation import WRONG_COLUMN_COUNT

NAME = "census-income"
HALVING_SEED = 2018
LAYOUT = ("UCI Census-Income (KDD): census-income.data and census-income.test "
          "(https://archive.ics.uci.edu/dataset/117/census+income+kdd)")

# census-income.names, in file order (the 40 attributes, instance weight, the income label)
SOURCE_COLUMNS = [
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_stat", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_a_labor_union",
    "reason_for_unemployment", "full_or_part_time_employment_stat", "capital_gains", "capital_losses",
    "dividends_from_stocks", "tax_filer_stat", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
]
NEVER_FEATURES = ("marital_stat", "instance_weight", "income")
FEATURE_COLUMNS = [c for c in SOURCE_COLUMNS if c not in NEVER_FEATURES]
LABELS = ("income_50k", "never_married")
INCOME_LABELS = {"- 50000.": 0, "50000+.": 1}
NEVER_MARRIED = "Never married"

UNKNOWN_INCOME = "unknown_income_label"


def output_row(line: str) -> list[str]:
    """One source line as the output's values: the feature columns, then income_50k and never_married."""
    values = [value.strip() for value in line.split(",")]
    if len(values) != len(SOURCE_COLUMNS):
        raise Rejected(WRONG_COLUMN_COUNT)
    row = dict(zip(SOURCE_COLUMNS, values))
    if row["income"] not in INCOME_LABELS:
        raise Rejected(UNKNOWN_INCOME)
    labels = [INCOME_LABELS[row["income"]], int(row["marital_stat"] == NEVER_MARRIED)]
    return [row[c] for c in FEATURE_COLUMNS] + labels


def _usable_rows(path: Path, rejected: Counter):
    for _, line in data_lines(path):
        try:
            yield output_row(line)
        except Rejected as err:
            rejected[err.reason] += 1


def halves(count: int, seed: int = HALVING_SEED) -> list[str]:
    """'eval' or 'test' for each of `count` rows: a seeded random half each (eval gets the smaller on odd counts)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    split = ["test"] * count
    for index in order[: count // 2]:
        split[index] = "eval"
    return split


def prepare(source_dir, out_dir, seed: int = HALVING_SEED) -> dict:
    """Writes train/eval/test CSVs and `census_income.yaml` into `out_dir`; returns the summary."""
    started = time.monotonic()
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    train_file = find_source_file(source_dir, "census-income.data", LAYOUT)
    test_file = find_source_file(source_dir, "census-income.test", LAYOUT)
    rejected = Counter()
    with SplitWriter(out_dir, FEATURE_COLUMNS + list(LABELS), ["train", "eval", "test"]) as writer:
        for values in _usable_rows(train_file, rejected):
            writer.write("train", values)
        test_rows = list(_usable_rows(test_file, rejected))
        for values, split in zip(test_rows, halves(len(test_rows), seed)):
            writer.write(split, values)
    config_path = write_ready_config("census_income.yaml", out_dir)
    return summary(NAME, writer, rejected, config_path, started, seed=seed)
