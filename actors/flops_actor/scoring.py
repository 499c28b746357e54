"""The trained model behind the HTTP server: loading it, and answering one scoring request.

Decision: a request body is handled by MLflow's own scoring function
(``mlflow.pyfunc.scoring_server.invocations``, what ``mlflow models serve`` runs for every
request), so the accepted payloads, their conversion, the predictions' JSON and the error
documents are MLflow's by construction, for the MLflow version the image holds (the one that
saved the model). This module adds only what MLflow's server does around it: errors as
``{"error_code": ..., "message": ...}`` with MLflow's HTTP status, and a 500 for anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flops_utils.logging import logger

from flops_actor.repository import describe

JSON = "application/json"
MLMODEL = "MLmodel"


class ModelNotLoaded(RuntimeError):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def error_answer(status: int, error_code: str, message: str) -> Answer:
    """An error in MLflow's format: ``{"error_code": "BAD_REQUEST", "message": ...}``."""
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    return Answer(status, JSON, body)


class Scorer:
    """One loaded MLflow model (``mlflow.pyfunc.load_model``); safe to call from threads."""

    def __init__(self, model_dir: Path) -> None:
        if not (model_dir / MLMODEL).is_file():
            raise ModelNotLoaded(
                f"no {MLMODEL} file in {model_dir}: FLOPS_MODEL_DIR must name an MLflow model "
                "directory (the aggregator's <output>/model)"
            )
        import mlflow.pyfunc

        try:
            self.model = mlflow.pyfunc.load_model(str(model_dir))
        except Exception as exc:  # MLflow, the flavor's library or the pickled code
            raise ModelNotLoaded(
                f"cannot load the MLflow model in {model_dir}: {describe(exc)}"
            ) from exc
        self.input_schema = self.model.metadata.get_input_schema()

    @property
    def flavors(self) -> list[str]:
        return sorted(self.model.metadata.flavors)

    def invoke(self, body: bytes, content_type: str) -> Answer:
        """MLflow's answer to ``POST /invocations`` with this body and content type."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        try:
            response = scoring_server.invocations(  # type: ignore[no-untyped-call]
                body, content_type, self.model, self.input_schema
            )
        except MlflowException as exc:
            error: Any = exc  # MLflow's own status and document for its error code
            return Answer(int(error.get_http_status_code()), JSON,
                          str(error.serialize_as_json()).encode())
        except Exception as exc:  # MLflow's server answers these with 500 too
            logger.exception("scoring failed")
            return error_answer(500, "INTERNAL_ERROR", f"scoring failed: {describe(exc)}")
        text: Any = response.response
        data = text.encode() if isinstance(text, str) else bytes(text)
        return Answer(int(response.status), str(response.mimetype), data)
