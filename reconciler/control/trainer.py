"""Training runs in flight (stages 4-5): place and start a run, follow its aggregator into the
observer log and the record, keep its model, take it down.

Decision: a run's record names it (run key and service name) before any actor starts, and
everything else is found again from Docker by that name; the aggregator's events are counted
into the record as they are logged. So a reconciler killed at any moment continues the run it
started (one aggregator, one set of learners, every round logged once), and a finished run is
never started again: its record says `finished` under the same key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from reconciler.control.book import RecordBook
from reconciler.control.outages import Outages
from reconciler.control.reports import Report, StageReport
from reconciler.control.settling import Settling
from reconciler.core import transitions
from reconciler.core.config import HostConfig
from reconciler.core.failure import PLACEMENT, Failure, infrastructure
from reconciler.core.plan import training_images
from reconciler.core.project import DesiredProject, Phase, ProjectRecord
from reconciler.core.record import RoundRecord, TrainingPhase, TrainingRecord
from reconciler.core.render import render_training_compose
from reconciler.core.text import shown
from reconciler.core.times import parse_utc
from reconciler.core.training import (
    LearnerHost,
    Placement,
    TrainingSpec,
    Unplaceable,
    place,
    run_key,
    run_name,
    swarm_training_spec,
    training_specs,
)
from reconciler.edges.backend import BackendError
from reconciler.edges.training_backend import Actor
from reconciler.protocol.events import decode
from reconciler.workspace import Workspace

POLL_SECONDS = 0.5
MAX_PROBES = 8  # data-tag probes at once


class Trainer:
    """Starts training runs, follows them and records what their aggregator reports.

    Where it sits: below the controller, which decides that a project's run is due and calls
    ``start``, ``take_down``, ``stop_overdue`` and ``follow_all`` once per pass. It talks to
    the learner hosts' engines (``edges/training_backend.py``) and changes records only
    through the record book. It owns one follower thread per running run.
    """

    def __init__(self, workspace: Workspace, book: RecordBook, outages: Outages,
                 report: Report, on_finished: Callable[[], None], settling: Settling) -> None:
        self.ws = workspace
        self.settling = settling
        self.config = workspace.config
        self.clock = workspace.clock
        self.book = book
        self.outages = outages
        self.report = report
        self.on_finished = on_finished
        self.backend = workspace.training
        self._followers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- starting -----------------------------------------------------------------------------

    def start(self, want: DesiredProject, have: ProjectRecord) -> None:
        """Place the project's run on the learner hosts that hold its data and start it."""
        config = want.sla.training_configuration
        key = run_key(training_images(have), config, have.retrain)
        name = run_name(want.name, key)
        if have.training is not None and have.training.phase is TrainingPhase.running:
            self.take_down(have.project, have.training, "a new run replaces it")
        self.report(StageReport(want.name, "placing learners"))
        try:
            hosts = self.backend.learner_hosts()
            learner_hosts = self._data_on(hosts, have.images["learner"])
            placement = place(learner_hosts, config, no_hosts=self.backend.no_learner_host)
            if not isinstance(placement, Unplaceable):
                placement = self.backend.place_aggregator(placement)
        except BackendError as error:
            self._fail(want.name, "placement", infrastructure(str(error)))
            return
        if isinstance(placement, Unplaceable):
            self._fail(want.name, "placement", Failure(PLACEMENT, placement.reason))
            return
        run = transitions.new_run(run=key, name=name, aggregator=placement.aggregator,
                                  learners=list(placement.learners),
                                  total_rounds=config.training_rounds, now=self.clock.now())
        self.book.change(want.name, lambda record: transitions.training(
            transitions.with_sla(record, want), run))
        self.book.note(want.name, "train", f"run {key} starts: aggregator on "
                       f"{placement.aggregator}, learners on {', '.join(placement.learners)} "
                       f"({config.training_rounds} rounds, data tags "
                       f"{', '.join(config.data_tags)})")
        by_name = {h.name: h for h in hosts}
        try:
            self._deploy(want, name, placement, by_name, have.images)
            self.outages.recovered("training hosts")
        except BackendError as error:
            self.outages.failed("training hosts", str(error))
            self._fail(want.name, "deploy", infrastructure(str(error)))
            self.take_down(want.name, run, "it could not be started", quiet=True)
            return
        self.report(StageReport(want.name, "training"))

    def _data_on(self, hosts: list[HostConfig], image: str) -> list[LearnerHost]:
        """The data tags each learner host holds, asked of all hosts at once: each answer
        is a one-shot container of ``image`` there, and asked in turn their start-ups add
        up (about a second each)."""
        if len(hosts) <= 1:
            return [LearnerHost(h.name, self.backend.data_tags(h, image)) for h in hosts]
        with ThreadPoolExecutor(max_workers=min(MAX_PROBES, len(hosts))) as pool:
            tags = list(pool.map(lambda host: self.backend.data_tags(host, image), hosts))
        return [LearnerHost(h.name, found) for h, found in zip(hosts, tags, strict=True)]

    def _deploy(self, want: DesiredProject, name: str, placement: Placement,
                hosts: dict[str, HostConfig], images: dict[str, str]) -> None:
        """A swarm: the run's one stack. Compose: the aggregator's engine first (its
        published port tells the others where it is)."""
        config = want.sla.training_configuration
        data_dirs = {h: c.data_dir or "" for h, c in hosts.items()}
        flavor = want.sla.ml_model_flavor.value
        nodes = self.backend.swarm_nodes()
        if nodes is not None:
            stack = swarm_training_spec(want.name, name, nodes=nodes, data_dirs=data_dirs,
                                        placement=placement, config=config, flavor=flavor,
                                        images=images)
            self.backend.deploy(self.config.swarm_manager, stack.name,
                                render_training_compose(self.ws.templates, stack))
            return

        def specs(address: str | None = None) -> list[TrainingSpec]:
            return training_specs(
                want.name, name, hosts={h: c.docker_host for h, c in hosts.items()},
                data_dirs=data_dirs, placement=placement, config=config, flavor=flavor,
                images=images, aggregator_address=address)

        first, *others = specs()
        aggregator_host = hosts[placement.aggregator]
        self.backend.deploy(aggregator_host, first.name,
                            render_training_compose(self.ws.templates, first))
        if not others:
            return
        [aggregator] = [a for a in self.backend.actors(name) if a.role == "aggregator"]
        address = f"{aggregator_host.address or '127.0.0.1'}:" \
                  f"{self.backend.published_port(aggregator)}"
        for spec in specs(address)[1:]:
            learner = next(actor for actor in spec.actors if actor.role == "learner")
            host = hosts[learner.env["FLOPS_LEARNER_NAME"]]
            self.backend.deploy(host, spec.name, render_training_compose(self.ws.templates,
                                                                         spec))

    # -- following ----------------------------------------------------------------------------

    def running(self) -> list[ProjectRecord]:
        return self.book.matching(lambda r: r.phase is Phase.training and r.training is not None)

    def following(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._followers.values())

    def follow_all(self, *, background: bool) -> None:
        """Follow every running run: in threads, or, without ``background``, record only the
        runs whose aggregator has ended."""
        for record in self.running():
            project = record.project
            if not background:
                self._follow(project, until_end=False)
                continue
            with self._lock:
                thread = self._followers.get(project)
                if thread is not None and thread.is_alive():
                    continue
                thread = threading.Thread(target=self._follow_guarded, args=(project,),
                                          name=f"train-{project}", daemon=True)
                self._followers[project] = thread
            thread.start()

    def _follow_guarded(self, project: str) -> None:
        try:
            self._follow(project, until_end=True)
        finally:
            self.on_finished()

    def _follow(self, project: str, *, until_end: bool) -> None:
        """Log the aggregator's new events; when it (or a learner, badly) has ended, record
        the run's end. ``until_end``: keep looking until then (a follower thread)."""
        since: datetime | None = None
        first = True
        while True:
            record = self.book.get(project)
            run = record.training if record is not None else None
            if record is None or run is None or record.phase is not Phase.training:
                return  # ended on purpose (timeout, prune, a new run)
            try:
                actors = self.backend.actors(run.name)
                aggregator = next((a for a in actors if a.role == "aggregator"), None)
                if aggregator is None:
                    self._fail(project, "train", infrastructure(
                        f"the aggregator of run {run.run} is gone (removed outside the "
                        "reconciler?); the run is started again"), run)
                    return
                lines = self.backend.output(aggregator, since)
                self.outages.recovered("training hosts")
            except BackendError as error:
                self.outages.failed("training hosts", str(error))
                if not until_end:
                    return
                self.clock.sleep(self.config.retry_base)
                continue
            if lines:
                since = parse_utc(lines[-1].at)
            events = [(o.at, e) for o in lines if o.stream == "stdout"
                      if (e := decode(o.line)) is not None]
            self._log_rounds(project, events, resumed=first)
            first = False
            failed_learner = next((a for a in actors if a.role == "learner"
                                   and a.exit_code not in (None, 0)), None)
            if aggregator.exit_code is not None:
                with self.settling.cleaning_up():
                    self._ended(project, aggregator, actors)
                return
            if failed_learner is not None:
                with self.settling.cleaning_up():
                    self._fail(project, "train", self._learner_failure(failed_learner), run)
                return
            if not until_end:
                return
            self.clock.sleep(POLL_SECONDS)

    def _log_rounds(self, project: str, events: list[tuple[str, dict[str, Any]]], *,
                    resumed: bool) -> None:
        """The aggregator's round events not in the record yet: a `train` line each, and the
        round into the record. ``resumed``: the first look after a (re)start, whose first
        round may have been logged just before a crash (it is not written twice)."""
        for at, event in events:
            record = self.book.get(project)
            run = record.training if record is not None else None
            if run is None or event.get("type") != "round" \
                    or not isinstance(event.get("round"), int):
                continue
            result = _round(event)
            if any(r.round == result.round for r in run.rounds):
                continue
            self.book.events(project, [_round_line(result, run.total_rounds)], at,
                             resumed=resumed)
            resumed = False
            self.book.change(project, partial(_add_round, result=result))
            self.report(StageReport(project, f"round {result.round}/{run.total_rounds}"))

    def _ended(self, project: str, aggregator: Actor, actors: list[Actor]) -> None:
        record = self.book.get(project)
        run = record.training if record is not None else None
        if record is None or run is None:
            return
        events = [e for o in self.backend.output(aggregator) if o.stream == "stdout"
                  if (e := decode(o.line)) is not None]
        finished = next((e for e in events if e.get("type") == "finished"), None)
        if aggregator.exit_code == 0 and finished is not None:
            destination = self.ws.store.root / "models" / project / run.run
            try:
                self.backend.copy_out(aggregator, "/flops/output", destination)
            except BackendError as error:
                self._fail(project, "train", infrastructure(str(error)), run)
                return
            examples = self._examples(actors)  # logged before the run counts as trained
            if examples:
                self.book.note(project, "train", f"learners trained on {examples}")
            result = _result(destination / "result.json")
            best = finished.get("best_round") if isinstance(finished.get("best_round"), int) \
                else result.get("best_round")
            self.book.change(project, lambda have: _with_rounds(have, result))
            final = self.book.change(project, lambda have: transitions.trained(
                have, best, str(destination / "model"), self.clock.now()))
            summary = _best_summary(final.training if final else None)
            self.book.note(project, "train", f"run {run.run} finished: best round {best}"
                           f"{summary}; model kept at {destination / 'model'}")
            self.report(StageReport(project, "trained"))
            self.take_down(project, run, "the run finished")
            return
        message = next((str(e.get("message")) for e in reversed(events)
                        if e.get("type") == "error"), None)
        learner = next((a for a in actors if a.role == "learner"
                        and a.exit_code not in (None, 0)), None)
        failure = self._aggregator_failure(message, learner, aggregator.exit_code)
        if aggregator.infrastructure is not None and message is None:
            failure = infrastructure(f"the aggregator ({aggregator.host.name}): "
                                     f"{shown(aggregator.infrastructure, 1000)}")
        self._fail(project, "train", failure, run)

    def _examples(self, actors: list[Actor]) -> str:
        """Each learner's host and the examples its last fit used (its own data: the
        learners' events, read before their containers go)."""
        counts = []
        for learner in (a for a in actors if a.role == "learner"):
            try:
                lines = self.backend.output(learner)
            except BackendError:
                continue
            events = [e for o in lines if o.stream == "stdout"
                      if (e := decode(o.line)) is not None]
            fits = [e for e in events if e.get("type") == "fit"]
            # the learner's own name (FLOPS_LEARNER_NAME: its host) is in its ready event
            name = next((str(e["learner"]) for e in events if e.get("type") == "ready"
                         and isinstance(e.get("learner"), str)), learner.host.name)
            if fits and isinstance(fits[-1].get("examples"), int):
                counts.append(f"{shown(name, 100)}: {fits[-1]['examples']} examples")
        return ", ".join(sorted(counts))

    def _aggregator_failure(self, error: str | None, learner: Actor | None,
                            code: int | None) -> Failure:
        if error and "learner" in error and "round" in error:
            return Failure("learner", shown(error, 1000) + "; fix the repository's "
                           "fit_model/evaluate_model (the learner's log has the traceback)")
        if learner is not None:
            return self._learner_failure(learner)
        return Failure("aggregator", shown(error or f"the aggregator exited with status "
                                           f"{code} without an error", 1000))

    def _learner_failure(self, learner: Actor) -> Failure:
        """A learner that ended badly: `data` when it failed before its data was loaded;
        `infrastructure` when its program never ended it (a node lost, a task rejected)."""
        if learner.infrastructure is not None:
            return infrastructure(f"learner on {learner.host.name} ({learner.service}): "
                                  f"{shown(learner.infrastructure, 1000)}")
        events = [e for o in self.backend.output(learner) if o.stream == "stdout"
                  if (e := decode(o.line)) is not None]
        error = next((str(e.get("message")) for e in reversed(events)
                      if e.get("type") == "error"), f"exited with status {learner.exit_code}")
        category = "learner" if any(e.get("type") == "ready" for e in events) else "data"
        hint = ("check the learner host's data directory for the project's data tags"
                if category == "data" else "the learner's log has the traceback")
        return Failure(category, f"learner on {learner.host.name} ({learner.service}): "
                       f"{shown(error, 1000)}; {hint}")

    # -- ending -------------------------------------------------------------------------------

    def take_down(self, project: str, run: TrainingRecord, why: str, *,
                  quiet: bool = False) -> None:
        try:
            self.backend.remove(run.name)
        except BackendError as error:
            self.book.warn(project, "cleanup", str(error))
            return
        if not quiet:
            self.book.note(project, "cleanup", f"training run {run.run} removed ({why})")

    def stop_overdue(self) -> None:
        """Fail and stop the runs that ran longer than training_timeout."""
        now = self.clock.now()
        for record in self.running():
            run = record.training
            assert run is not None
            if (now - parse_utc(run.started)).total_seconds() <= self.config.training_timeout:
                continue
            self._fail(record.project, "timeout", Failure(
                "aggregator", f"run {run.run} ran longer than training_timeout "
                f"({self.config.training_timeout:g}s) and was stopped; raise training_timeout "
                "or train fewer rounds"), run)

    def next_wake(self) -> float | None:
        """Seconds until the first running run reaches training_timeout."""
        now = self.clock.now()
        waits = [self.config.training_timeout - (now - parse_utc(r.training.started)
                                                  ).total_seconds()
                 for r in self.running() if r.training is not None]
        return max(1.0, min(waits)) if waits else None

    def _fail(self, project: str, stage: str, failure: Failure,
              run: TrainingRecord | None = None) -> None:
        record = self.book.get(project)
        if record is None:
            return
        final = transitions.failed(record, failure, self.clock.now(), self.config)
        if record.error != failure.text or record.phase is not Phase.failed:
            self.book.fail(project, stage, transitions.retry_note(final))
        self.book.put(final)
        self.report(StageReport(project, "failed"))
        if run is not None:
            self.take_down(project, run, "the run failed")


def _add_round(have: ProjectRecord, result: RoundRecord) -> ProjectRecord:
    logged = have.training.events_logged if have.training is not None else 0
    return transitions.round_done(have, result, logged + 1)


def _round(event: dict[str, Any]) -> RoundRecord:
    def number(key: str) -> float | None:
        value = event.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None

    learners = event.get("learners")
    return RoundRecord(round=int(event["round"]), loss=number("loss"),
                       accuracy=number("accuracy"),
                       learners=learners if isinstance(learners, int) else 0,
                       seconds=number("seconds") or 0.0)


def _round_line(result: RoundRecord, total: int) -> Any:
    from reconciler.core.events import LogLine

    loss = "?" if result.loss is None else f"{result.loss:.4g}"
    accuracy = "?" if result.accuracy is None else f"{result.accuracy:.4g}"
    return LogLine("INFO", "train", f"round {result.round}/{total} loss={loss} "
                   f"accuracy={accuracy} learners={result.learners} ({result.seconds:.1f}s)")


def _result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _with_rounds(have: ProjectRecord, result: dict[str, Any]) -> ProjectRecord:
    """The rounds of result.json (the aggregator's own account) when the log missed any."""
    rounds = result.get("rounds")
    if have.training is None or not isinstance(rounds, list):
        return have
    parsed = [_round(r) for r in rounds if isinstance(r, dict) and isinstance(r.get("round"), int)]
    if len(parsed) <= len(have.training.rounds):
        return have
    return replace(have, training=replace(have.training, rounds=parsed))


def _best_summary(run: TrainingRecord | None) -> str:
    if run is None or run.best_round is None:
        return ""
    best = next((r for r in run.rounds if r.round == run.best_round), None)
    if best is None or best.accuracy is None:
        return ""
    return f" (accuracy {best.accuracy:.4g}, loss {best.loss if best.loss is not None else '?'})"

