"""Optional MLflow tracking of a federation (``MLFLOW_TRACKING_URI``).

One MLflow run per federation in experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``flops``):
the settings as parameters, loss/accuracy/learners per round (step = round), and at the end
the saved model directory (artifact ``model``, loadable as ``runs:/<run>/model``) and
``result.json``. Started before the first learner is awaited, so a wrong URI fails early.
"""

from __future__ import annotations

from pathlib import Path

from flops_actor.rounds import RoundResult
from flops_actor.settings import AggregatorSettings


class Tracking:
    def __init__(self, settings: AggregatorSettings) -> None:
        import mlflow

        self._mlflow = mlflow
        if settings.tracking_uri is not None:
            mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_experiment(settings.experiment)
        self.run_id: str = mlflow.start_run(run_name="flops-federation").info.run_id
        mlflow.log_params(
            {
                "rounds": settings.rounds,
                "min_available_clients": settings.min_available_clients,
                "min_fit_clients": settings.min_fit_clients,
                "min_evaluate_clients": settings.min_evaluate_clients,
                "flavor": settings.flavor,
            }
        )

    def log_round(self, result: RoundResult) -> None:
        metrics = {"learners": float(result.learners), "round_seconds": result.seconds}
        if result.loss is not None:
            metrics["loss"] = result.loss
        if result.accuracy is not None:
            metrics["accuracy"] = result.accuracy
        self._mlflow.log_metrics(metrics, step=result.round)

    def finish(self, model_dir: Path, result_file: Path, best_round: int) -> None:
        self._mlflow.log_metric("best_round", best_round)
        self._mlflow.log_artifacts(str(model_dir), artifact_path=model_dir.name)
        self._mlflow.log_artifact(str(result_file))
        self._mlflow.end_run()

    def fail(self) -> None:
        self._mlflow.end_run(status="FAILED")
