"""A synthetic table with two categorical columns and a known rule, for the tests of categorical
features (tests/unit/test_trainer_categorical.py, tests/e2e/test_categorical.py).

``churned`` is 1 when the plan is ``basic`` and the customer is under 40, or the country is ``fr``
and the plan is not ``team``; 3% of the labels are flipped. About a quarter of the rows churn, so
predicting the majority class scores about 0.75; the rule itself about 0.97.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

PLANS = ("basic", "pro", "team")
COUNTRIES = ("de", "fr", "it", "es", "nl")
FEATURES = ("age", "plan", "country")
TARGET = "churned"
SPEC_FEATURES: list[Any] = [
    "age",
    {"name": "plan", "type": "categorical"},
    {"name": "country", "type": "categorical"},
]


def rule(age: float, plan: str, country: str) -> int:
    return int((plan == "basic" and age < 40) or (country == "fr" and plan != "team"))


@dataclass(frozen=True)
class Table:
    rows: list[tuple[float, str, str]]
    labels: list[int]

    def csv_bytes(self, index: Any = None) -> bytes:
        picked = range(len(self.rows)) if index is None else index
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*FEATURES, TARGET])
        for i in picked:
            age, plan, country = self.rows[i]
            w.writerow([f"{age:g}", plan, country, self.labels[i]])
        return buf.getvalue().encode()


def table(n: int, seed: int = 0, flip: float = 0.03) -> Table:
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, str, str]] = []
    labels: list[int] = []
    for _ in range(n):
        age = float(rng.integers(18, 71))
        plan = str(rng.choice(PLANS))
        country = str(rng.choice(COUNTRIES))
        label = rule(age, plan, country)
        if rng.random() < flip:
            label = 1 - label
        rows.append((age, plan, country))
        labels.append(label)
    return Table(rows, labels)
