"""Saves the best model in MLflow's format for the project's flavor.

The aggregator loads the best parameters into a fresh ``ModelManager().get_model()`` and
saves it with ``mlflow.sklearn`` / ``mlflow.pytorch`` / ``mlflow.keras`` (Keras 2 and 3;
also for flavor ``tensorflow`` when the model is a Keras model) / ``mlflow.tensorflow``.
Decisions: the flavor API is used only when the model really is of that library (checked
against modules the repository already imported, so nothing heavy is imported here); any
other model is saved as an MLflow pyfunc that calls the model's own ``predict``. sklearn
models are saved with cloudpickle, like FLOps (MLflow 3's default, skops, cannot hold custom
classes without a trust list). The repository's top-level modules and ``flops_utils`` go into
the model as code paths, so a model whose classes live in the repository loads anywhere.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import flops_utils

PYFUNC = "python_function"


def _instance_of(obj: Any, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def code_paths_for(repository_paths: list[str]) -> list[str]:
    return [*repository_paths, str(Path(flops_utils.__file__).parent)]


def save_model(model: Any, flavor: str, path: Path, repository_paths: list[str]) -> str:
    """Save ``model`` to ``path`` (replacing it); returns the MLflow flavor that saved it."""
    if path.exists():
        shutil.rmtree(path)
    code = code_paths_for(repository_paths)
    if flavor == "sklearn" and _instance_of(model, "sklearn.base", "BaseEstimator"):
        import mlflow.sklearn

        mlflow.sklearn.save_model(
            model, str(path), serialization_format="cloudpickle", code_paths=code
        )
        return "sklearn"
    if flavor == "pytorch" and _instance_of(model, "torch.nn", "Module"):
        import mlflow.pytorch

        mlflow.pytorch.save_model(model, str(path), code_paths=code)
        return "pytorch"
    if flavor in ("keras", "tensorflow") and (
        _instance_of(model, "keras", "Model") or _instance_of(model, "tf_keras", "Model")
    ):
        import mlflow.keras

        mlflow.keras.save_model(model, str(path))
        return "keras"
    if flavor == "tensorflow" and _instance_of(model, "tensorflow", "Module"):
        import mlflow.tensorflow

        mlflow.tensorflow.save_model(model, str(path))
        return "tensorflow"
    return _save_pyfunc(model, path, code)


def _save_pyfunc(model: Any, path: Path, code: list[str]) -> str:
    import cloudpickle
    import mlflow.pyfunc

    from flops_actor import pyfunc_model

    cloudpickle.register_pickle_by_value(pyfunc_model)
    mlflow.pyfunc.save_model(
        str(path), python_model=pyfunc_model.RepositoryModel(model), code_paths=code
    )
    return PYFUNC
