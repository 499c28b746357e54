"""The two abstract classes a FLOps ML repository implements.

``model_manager.py`` defines ``class ModelManager(ModelManagerTemplate)``; ``data_manager.py``
usually defines ``class DataManager(DataManagerTemplate)``. The learner wraps the
ModelManager in a Flower client; the aggregator builds one without data to get the initial
parameters and to save the best model. The docstrings are the contract a repository author
follows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class DataManagerTemplate(ABC):
    """Loads and prepares the learner's local data.

    Typical shape::

        class DataManager(DataManagerTemplate):
            def __init__(self):
                (self.x_train, self.x_test), (self.y_train, self.y_test) = self._prepare_data()

            def _prepare_data(self):
                dataset = load_dataset()          # flops_utils.ml_repo_building_blocks
                dataset.set_format("numpy")
                x = dataset["image"].reshape((len(dataset), -1))
                y = dataset["label"]
                split = int(0.8 * len(x))
                return (x[:split], x[split:]), (y[:split], y[split:])

            def get_data(self):
                return (self.x_train, self.x_test), (self.y_train, self.y_test)

    Only learners create a DataManager (through ``ModelManager.set_model_data``); the
    aggregator has no data.
    """

    @abstractmethod
    def _prepare_data(self) -> Any:
        """Fetch the local data and preprocess it.

        Call ``flops_utils.ml_repo_building_blocks.load_dataset()`` to get the learner's
        data (a Hugging Face ``datasets.Dataset`` built from the Parquet files of the
        project's data tags), then split, scale or augment it as the model needs.
        """

    @abstractmethod
    def get_data(self) -> Any:
        """Return the prepared data, ready for training and evaluation.

        Called by the ModelManager, e.g. ``(x_train, x_test), (y_train, y_test)`` or
        ``trainloader, testloader``.
        """


class ModelManagerTemplate(ABC):
    """Owns the model; the FL actors call only these six methods.

    ``__init__`` must build the model without touching data: the aggregator constructs a
    ModelManager to read the initial parameters and to save the best model, and it has no
    data. Parameters travel between learners and aggregator as a list of numpy arrays;
    ``get_model_parameters`` may return such a list (or a tuple, a dict of arrays, or plain
    numbers), and ``set_model_parameters`` receives the same shape back.
    """

    @abstractmethod
    def set_model_data(self) -> None:
        """Get the data from the DataManager and keep it for fit and evaluate.

        Called once, by the learner only, before the first round. Do not call it from
        ``__init__``. Example: ``(self.x_train, self.x_test), (self.y_train, self.y_test)
        = DataManager().get_data()``.
        """

    @abstractmethod
    def get_model(self) -> Any:
        """Return the managed model, e.g. ``self.model``.

        The aggregator saves it in MLflow format for the project's flavor (sklearn,
        pytorch, keras/tensorflow) after loading the best parameters into it.
        """

    @abstractmethod
    def get_model_parameters(self) -> Any:
        """Return the model's parameters, e.g. ``self.model.get_weights()`` or
        ``[self.model.coef_, self.model.intercept_]`` or
        ``[v.cpu().numpy() for v in self.model.state_dict().values()]``.

        Must work right after ``__init__`` (the aggregator sends them as the initial
        global parameters), so initialise the weights there.
        """

    @abstractmethod
    def set_model_parameters(self, parameters: Any) -> None:
        """Load parameters of the shape ``get_model_parameters`` returns, e.g.
        ``self.model.set_weights(parameters)``."""

    @abstractmethod
    def fit_model(self) -> int:
        """Train on the local training data (one round's worth of local epochs) and
        return the number of training examples used, e.g. ``len(self.x_train)``; the
        aggregator weights this learner's parameters by it."""

    @abstractmethod
    def evaluate_model(self) -> tuple[Any, Any, int]:
        """Evaluate on the local test data and return ``(loss, accuracy,
        number_of_test_examples)``; the aggregator averages loss and accuracy weighted by
        the number of examples."""
