"""The worker's garbage-collector settings (worker.runtime.app.tune_gc): measured in docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator

import pytest

from schemas import contract
from worker.normalise import model, records
from worker.runtime.app import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tuning_raises_the_thresholds_and_freezes_what_lives_already(restored_gc: None) -> None:
    alive = [[n] for n in range(100)]  # tracked containers made "at start-up"
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700  # the default, which cost ~30% of the worker's CPU
    assert gc.get_freeze_count() >= len(alive)


@pytest.mark.parametrize(
    "struct",
    [
        contract.Person(id="p"),
        contract.Vehicle(),
        contract.Appointment(dms_number="A", created_at=dt.datetime(2026, 1, 1)),
        model.Person(id="p"),
        model.Note("f", "r", "a"),
        records.Offset("t", 0, 1),
    ],
)
def test_the_data_structs_are_not_tracked_by_the_collector(struct: object) -> None:
    # They hold only values and other such structs (no cycles), and a batch makes tens of thousands of them.
    assert not gc.is_tracked(struct)
