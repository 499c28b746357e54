"""The wire contract between the reconciler and the builder container: files, events, kinds.

Decision: the builder is told everything through one JSON document in a read-only file,
``/run/secrets/flops-build-request`` (compose bind-mounts it from a 0600 file beside the
rendered spec, a swarm turns it into a secret of the builder's stack; both go with the
builder), and answers only through stdout, one JSON object per line. The request can hold a
package index token or a proxy password and a CA bundle of any size, so it is never put into
the environment, the spec or a command line. Nothing else (no shared volume, no callback port)
crosses the container boundary, so a result survives a reconciler crash: it stays in the
exited container's log until it is harvested.

This package is standard-library only and imported by both sides: the builder image copies
it in. ``request.py`` holds the request's one parser and one serializer; this module the
names of the request file and the events' encoding; ``repair.py`` the repair value.

Request (the file ``/run/secrets/flops-build-request``)::

    {"project": str, "build_key": str,
     "repo_url": str,            # what the builder clones (may be a path inside the container)
     "source_url": str,          # the SLA's ml_repo_url, for labels and messages
     "commit": str,              # 40 hex digits, already resolved by the reconciler
     "ref": str | null,          # the ref the commit came from, a hint for a shallow fetch
     "flavor": str, "platforms": [str], "use_devel_base_images": bool,
     "images": {"learner": ref, "aggregator": ref},
     "push": bool,               # false in registry "local" mode: images stay in the engine
     "dockerfiles": {"learner": str, "aggregator": str},   # rendered by the reconciler
     "runtime_dockerfile": str,  # the FL runtime image's Dockerfile, rendered by the reconciler
     "labels": {str: str},       # common labels for every image
     "builder_version": str,
     "python_images": {"3.10": "image:tag", ...},   # optional: FL-actor base per python
     "conda_base_image": str | null,                # optional: base with conda/mamba
     "build_args": {"PIP_INDEX_URL": str, ...},     # optional: air-gapped / proxied sites
     "build_network": str | null,                   # optional: network of the RUN steps
     "ca_bundle": str,                              # optional: extra CA bundle (PEM) for pip
     "platform_images": {"linux/arm64": {"base_image": str, "python_images": {...},
                                         "conda_base_image": str | null}},  # optional
     "registry_url": str}                           # optional: "" in registry "local" mode

``platforms`` other than the engine's own build from their ``platform_images`` entry with
the classic builder's ``platform`` parameter (emulated: the host's kernel needs a QEMU
handler); stage ``platforms`` checks each such base image (of that platform, and a shell of it
runs) before anything is built, and a platform without an entry fails there. More than one
platform (``push`` must be true) tags each platform's image ``<tag>-<os>-<arch>``, pushes it,
and publishes a Docker manifest list under the normal tag at ``registry_url`` (stage
``index:<role>``); the stages of one platform (``runtime``, ``build:<role>``, ``push:<role>``)
then carry ``"platform"`` and their timings are named ``<stage> <platform>``.

``build_args`` may set only PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST,
HTTP_PROXY, HTTPS_PROXY and NO_PROXY: the FL-actor Dockerfile declares exactly these ARGs, so
they reach the dependency step without staying in the image. ``ca_bundle`` is written to
``.flops/ca-bundle.pem`` and trusted by pip while the dependencies install.

``python_images`` (optional; absent or ``{}`` = always the base image of the rendered
Dockerfile, the python pin is only recorded): keys are ``major.minor`` versions. When the
repository pins python (``python=3.10``, ``python==3.10.*``, ``python 3.10``,
``python>=3.10,<3.11``, ...) the newest key the pin allows selects the image; the builder
writes it into the first ``FROM`` line of both Dockerfiles. A pin that allows no key is a
``dependencies`` error naming the pin and the keys; no pin keeps the rendered base.

``conda_base_image`` (optional): a conda-capable image (conda, mamba or micromamba on PATH).
When conda.yaml lists conda-only packages (cudatoolkit, cudnn, ...) the images build FROM it,
and the builder writes the packages (plus the python pin) to ``.flops/conda-packages.txt`` and
the channels to ``.flops/conda-channels.txt``; a Dockerfile that does not mention
``conda-packages.txt`` gets a COPY/RUN step installing them right after its ``FROM`` line.
Without it, conda-only packages are a ``dependencies`` error listing them.

A second kind of build, ``"kind": "trained-model"`` (absent: ``"actors"``, the build above),
makes the image of a trained model (DESIGN §10): the learner image plus the aggregator's saved
MLflow model and the model server (``python3 -m flops_actor.serve``)::

    {"kind": "trained-model", "project": str, "build_key": str,
     "repo_url": str, "source_url": str,   # the SLA's ml_repo_url, for labels and messages
     "commit": str,                        # the commit the learner image was built from
     "images": {"trained-model": ref},     # <registry>/<owner>/<repo>/trained-model:<commit>-<run>
     "push": bool, "labels": {str: str},   # labels: the OCI source/revision, the run, its metrics
     "model_from": ref,                    # the project's learner image: the FROM of the image
     "model_dir": str,                     # absolute path of the model directory inside the
                                           # builder container (default /flops/model): the
                                           # reconciler copies it in before starting the builder
     "model_carrier": ref,                 # optional: an image holding the model directory at
                                           # /model; the builder pulls it and unpacks it to
                                           # model_dir first (a swarm builder: nothing can be
                                           # copied into a service's task)
     "model_dockerfile": str,              # templates/Dockerfile.model.j2, rendered
     "builder_version": str}

Its builder clones nothing and needs no package index: stage ``model`` checks the model
directory (an ``MLmodel`` file, a regular file inside it, with the ``python_function`` flavor
that the server loads), ``build:trained-model`` builds from a context of the model (under
``model/``), the builder's FL runtime (under ``runtime/``) and the Dockerfile (whose one RUN
step loads the model in the image, so a model that cannot load fails the build), and
``push:trained-model`` pushes when ``push``. Fields of the other kind are ignored (read as
their defaults). A missing model directory is an ``infrastructure`` error (the reconciler did
not copy it in), a model that is not a servable MLflow model a ``build`` error.

Events (stdout, one per line)::

    {"type": "stage", "stage": S, "state": "start"}       # "platform": P in a multi-
    {"type": "stage", "stage": S, "state": "end", "seconds": float}  # platform build
    {"type": "log", "level": "INFO"|"WARN"|"ERROR", "stage": S, "message": str,
     "details": [str]}                      # details optional: multi-line tool output
    {"type": "result", "ok": true, "images": {role: ref}, "digests": {role: str},
     "platform_digests": {role: {platform: str}},  # each platform's image; digests: the list's
     "timings": {stage: seconds}, "repairs": [str],
     "repair_diffs": [{"roles": [role], "summary": str, "diff": [str]}],
     "base_image": str | null}              # the FROM image used, when the builder chose it
    {"type": "result", "ok": false, "error": {"category": C, "stage": S, "message": str,
     "hint": str, "details": [str]}, "timings": {...}}

Bounds (builder/limits.py holds every cap): the builder's ``emit`` clips each event before
writing it. A message or
hint keeps at most 2,000 characters, a detail line, repair summary or diff line 500; ``details``
and each repair's ``diff`` keep at most 20 lines, ``repairs`` and ``repair_diffs`` at most 50
entries; a clipped value ends with ``... (truncated, N more characters|lines|repairs)`` (in
``repair_diffs`` a last ``{"roles": [], "summary": "... (truncated, N more repairs)", "diff":
[]}``). If the line is still longer than 64 KiB (``MAX_EVENT_BYTES``), the caps are tightened
until it fits; images, digests and timings are never clipped. Log events stop after 256 KiB
(``MAX_LOG_BYTES``) and one WARN log event counts the ones not sent, so one build writes at
most about 400 KiB: the log events, that WARN, two events per stage (about
20 stages for three platforms) and one result.

Each dependency repair is a WARN log event of stage ``dependencies`` whose message is the
summary and whose details are the diff lines (``- <as written>  # <file:line>``,
``+ <installed instead>``, ``  <kept>  # <file:line> (kept)``); ``repairs`` holds the
summaries, ``repair_diffs`` the whole repairs, and each image's ``flops.repairs`` label the
repairs of its role as a compact JSON array of the same objects.

Stages: ``clone``, ``check``, ``dependencies``, ``platforms`` (only with an emulated
platform), ``runtime``, ``build:<role>``, ``push:<role>``, ``index:<role>`` (only with more
than one platform);
for a trained model ``model``, ``build:trained-model``, ``push:trained-model``.
Error categories: ``repo``, ``dependencies``, ``build``, ``push``, ``infrastructure``.
The process exits 0 after an ok result and 1 after a failed one.
"""

from __future__ import annotations

import json
from typing import Any

# The request is a file: /run/secrets/<REQUEST_SECRET> (a compose bind mount or a swarm secret);
# REQUEST_FILE_ENV may name another path (tests, a builder run by hand).
REQUEST_SECRET = "flops-build-request"
REQUEST_FILE = f"/run/secrets/{REQUEST_SECRET}"
REQUEST_FILE_ENV = "FLOPS_BUILD_REQUEST_FILE"
ROLES = ("learner", "aggregator")
# The kinds of build a request asks for; the trained-model build makes one image of this role.
ACTORS, TRAINED_MODEL = KINDS = ("actors", "trained-model")
TRAINED_MODEL_ROLE = "trained-model"
MODEL_DIR = "/flops/model"  # where a trained-model build finds the model, by default
MODEL_CARRIER_PATH = "/model"  # where a model carrier image holds the model directory
CATEGORIES = ("repo", "dependencies", "build", "push", "infrastructure")
LEVELS = ("INFO", "WARN", "ERROR")
# The event kinds (an event's "type").
STAGE, LOG, RESULT = "stage", "log", "result"


def encode(event: dict[str, Any]) -> str:
    """One event as one line; ensure_ascii keeps the line free of stray line separators."""
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"))


def decode(line: str) -> dict[str, Any] | None:
    """An event from one line of builder output, or None when the line is not an event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value
