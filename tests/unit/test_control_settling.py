"""A stopping watch lets the clean-ups of recorded results finish (control/settling.py), and
only those: whoever saw a project's new phase finds its builder gone."""

from __future__ import annotations

import threading
from pathlib import Path

from control_bed import Bed

from reconciler.control.settling import Settling
from reconciler.core.project import Phase


def test_wait_returns_once_the_clean_up_under_way_has_ended() -> None:
    settling = Settling()
    entered, release = threading.Event(), threading.Event()

    def clean_up() -> None:
        with settling.cleaning_up():
            entered.set()
            release.wait()

    worker = threading.Thread(target=clean_up)
    worker.start()
    entered.wait()
    assert settling.wait(0.05) is False  # held: the bounded wait gives up
    release.set()
    assert settling.wait(30) is True
    worker.join()
    assert settling.wait(0) is True  # nothing under way: no waiting at all


def test_a_stopping_watch_waits_for_the_builder_of_a_recorded_result_to_be_removed(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()
    controller.apply(wait=False)
    builder = bed.backend.only_builder()
    bed.backend.removing, bed.backend.hold_remove = threading.Event(), threading.Event()
    stop = threading.Event()
    watch = threading.Thread(target=controller.watch, args=(stop,))
    watch.start()
    bed.backend.finish(builder.name)
    assert bed.backend.removing.wait(30)  # the follower recorded the result, now removes

    assert bed.record("alpha").phase is Phase.ready  # what a user sees before stopping
    stop.set()
    controller.wake.set()
    watch.join(0.2)
    assert watch.is_alive()  # the stop waits for the removal under way
    bed.backend.hold_remove.set()
    watch.join(30)
    assert not watch.is_alive()
    assert (builder.name, 10) in bed.backend.removed
