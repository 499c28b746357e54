"""An MLflow pyfunc around a repository's model that no MLflow flavor can save.

Used when the model is not of the project's flavor (the bundled toy example says sklearn but
its model is a plain Python object, and its image has no scikit-learn). The model saver
pickles this class by value, so loading the saved model needs MLflow and the repository's
modules (saved with it as code paths), not this package.
"""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc.model import PythonModel


class RepositoryModel(PythonModel):
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        predict = getattr(self.model, "predict", None)
        if predict is None:
            raise TypeError(f"{type(self.model).__name__} has no predict method")
        return predict(model_input)
