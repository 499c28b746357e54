"""Post-training steps of a finished run: the trained-model image (built by the image-builder
service, the model copied into it, or on a swarm pushed as a carrier image that the builder
pulls) and, when asked for, one server of it kept running.

Decision: each step is a record change like a build: the run's record says which image was
built (and its digest) and where it is served, so a pass knows what is left and a restart
repeats nothing. The builder of a trained-model image is named by the run and the image, so a
reconciler killed while it runs finds and follows that builder instead of starting another.
A step runs inside the pass (a trained-model build only copies the model onto the learner's
image and loads it once: seconds, not minutes).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from reconciler.control.book import RecordBook
from reconciler.control.outages import Outages
from reconciler.control.reports import Notice, Report, StageReport
from reconciler.core import transitions
from reconciler.core.events import Outcome, no_result_outcome, translate
from reconciler.core.failure import Failure, infrastructure
from reconciler.core.model_request import (
    model_carrier_ref,
    trained_model_labels,
    trained_model_ref,
    trained_model_request,
)
from reconciler.core.naming import builder_name, digest_of
from reconciler.core.project import DesiredProject, ProjectRecord
from reconciler.core.record import TrainingRecord
from reconciler.core.render import BuilderSpec, render_compose, render_request
from reconciler.core.sla import PostTrainingStep
from reconciler.edges.backend import PLACED, BackendError, Builder, Unschedulable
from reconciler.protocol.events import MODEL_DIR, TRAINED_MODEL_ROLE, decode
from reconciler.protocol.request import BuildRequest
from reconciler.workspace import Workspace


class PostTraining:
    """Runs the post_training_steps of finished runs.

    Where it sits: below the controller, which calls ``step`` for a trained project whose
    plan names a step still to do, and ``stop_serving`` when a project goes. It uses the
    workspace's builder backend and model server, and changes records only through the book.
    """

    def __init__(self, workspace: Workspace, book: RecordBook, outages: Outages,
                 report: Report) -> None:
        self.ws = workspace
        self.config = workspace.config
        self.book = book
        self.outages = outages
        self.report = report

    def step(self, want: DesiredProject, have: ProjectRecord) -> None:
        """The next step the project's finished run needs."""
        run = have.training
        assert run is not None
        steps = want.sla.post_training_steps
        if PostTrainingStep.build_image_for_trained_model in steps and run.model_image is None:
            self._build_image(want, have, run)
        elif PostTrainingStep.deploy_trained_model_image in steps and run.serving is None \
                and run.model_image is not None:
            self._serve(want, run)

    # -- the trained-model image --------------------------------------------------------------

    def _build_image(self, want: DesiredProject, have: ProjectRecord,
                     run: TrainingRecord) -> None:
        project, sla = want.name, want.sla
        if run.model is None or not Path(run.model).is_dir() or have.commit is None:
            self._fail(project, "model", infrastructure(
                f"the model of run {run.run} is not in the state directory ({run.model}); "
                f"run `reconciler retrain {project}`"))
            return
        backend = self.ws.backend
        ref = trained_model_ref(self.config.image_prefix, sla.ml_repo_url, have.commit, run.run)
        key = digest_of({"run": run.run, "image": ref})[:16]
        name = builder_name(project, key)
        model = Path(run.model)
        try:
            host = backend.pick_host(lambda text: self.book.warn(project, "model", text))
            builder = backend.find(host, name)
            if builder is None or not builder.started:
                self.book.note(project, "model", f"building the trained-model image {ref} of "
                               f"run {run.run} (builder {name} on host {host.name})")
                self.report(StageReport(project, "building the trained-model image"))
                carrier = backend.ship_model(host, model, model_carrier_ref(
                    self.config.image_prefix, sla.ml_repo_url, have.commit, run.run))
                if carrier:
                    self.book.note(project, "model", f"the model of run {run.run} travels to "
                                   f"the builder as image {carrier}")
                request = self._request(want, have, run, ref, key, carrier)
                spec = BuilderSpec(name=name, project=project, build_key=key,
                                   image=backend.builder_image(
                                       host, lambda text: self.report(Notice(text))),
                                   network=self.config.builder.network,
                                   docker_socket=host.socket_path(), request=request,
                                   stack=self.config.backend == "swarm")
                builder = backend.deploy(host, name, render_compose(self.ws.templates, spec),
                                         render_request(spec),
                                         copy_in=[] if carrier else [(model, MODEL_DIR)])
            outcome = self._collect(project, builder)
            backend.remove(host, name, stop_timeout=0)
        except Unschedulable as error:  # no node took the builder: taken down, tried later
            with contextlib.suppress(BackendError):
                backend.remove(host, name, stop_timeout=0)
            self._fail(project, "model", infrastructure(str(error)))
            return
        except BackendError as error:
            self._fail(project, "model", infrastructure(str(error)))
            return
        if outcome.failure is not None:
            self._fail(project, "model", outcome.failure)
            return
        digest = outcome.digests.get(TRAINED_MODEL_ROLE, "")
        self.book.change(project, lambda record: transitions.model_image_built(
            record, ref, digest))
        self.book.note(project, "model", f"trained-model image {ref} ({digest})")
        self.report(StageReport(project, "trained"))

    def _request(self, want: DesiredProject, have: ProjectRecord, run: TrainingRecord,
                 ref: str, key: str, carrier: str) -> BuildRequest:
        sla = want.sla
        assert have.commit is not None
        best = next((r for r in run.rounds if r.round == run.best_round), None)
        return trained_model_request(
            self.ws.templates, project=want.name, source_url=sla.ml_repo_url,
            commit=have.commit, learner_image=have.images["aggregator"], image=ref,
            build_key=key, push=not self.config.local_registry, model_carrier=carrier,
            labels=trained_model_labels(
                source_url=sla.ml_repo_url, commit=have.commit, run=run.run,
                best_round=run.best_round, accuracy=best.accuracy if best else None,
                loss=best.loss if best else None, build_key=key))

    def _collect(self, project: str, builder: Builder) -> Outcome:
        """The builder's events into the project's log, and its outcome."""
        backend = self.ws.backend
        outcome: Outcome | None = None
        last: list[str] = []
        for output in backend.output(builder, follow=True):
            if output.stream == PLACED:
                node_id, _, hostname = output.line.partition(" ")
                self.book.note(project, "model", f"trained-model builder placed on node "
                               f"{node_id} ({hostname})")
                continue
            event = decode(output.line) if output.stream == "stdout" else None
            if event is None:
                last = [*last[-19:], output.line[:1000]] if output.line.strip() else last
                continue
            lines, result = translate(event)
            self.book.events(project, lines, output.at, resumed=False)
            outcome = result or outcome
        return outcome or no_result_outcome(backend.wait(builder), last)

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, want: DesiredProject, run: TrainingRecord) -> None:
        project = want.name
        assert run.model_image is not None
        self.report(StageReport(project, "starting the model server"))
        try:
            url = self.ws.serving.serve(project, run.model_image, run.aggregator)
        except BackendError as error:
            self._fail(project, "serve", infrastructure(str(error)))
            return
        self.book.change(project, lambda record: transitions.serving(record, url))
        self.book.note(project, "serve", f"the model of run {run.run} is served at {url} "
                       f"(POST {url}/invocations, GET {url}/health)")

    def check_serving(self, have: ProjectRecord) -> None:
        """A resync: a recorded server that no longer answers is forgotten, so the plan
        serves the model again (removed by hand, its host restarted without it)."""
        run = have.training
        if run is None or run.serving is None or self.ws.serving.healthy(run.serving):
            return
        self.book.warn(have.project, "serve", f"the model server at {run.serving} does not "
                       "answer GET /health; it is started again")
        self.book.change(have.project, lambda record: transitions.serving(record, None))

    def stop_serving(self, have: ProjectRecord, why: str) -> None:
        run = have.training
        if run is None or run.serving is None:
            return
        try:
            self.ws.serving.remove(have.project, run.aggregator)
        except BackendError as error:
            self.book.warn(have.project, "cleanup", str(error))
            return
        self.book.note(have.project, "cleanup", f"the model server at {run.serving} is "
                       f"removed ({why})")

    def _fail(self, project: str, stage: str, failure: Failure) -> None:
        record = self.book.get(project)
        if record is None:
            return
        final = transitions.failed(record, failure, self.ws.clock.now(), self.config)
        if record.error != failure.text:
            self.book.fail(project, stage, transitions.retry_note(final))
        self.book.put(final)
        self.report(StageReport(project, "failed"))
