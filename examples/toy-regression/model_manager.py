"""A FLOps ModelManager for a one-feature linear regression, in plain Python.

It follows the FLOps contract (set_model_data, get_model, get_model_parameters,
set_model_parameters, fit_model, evaluate_model) without third-party packages, so the
example builds on machines that cannot reach a package index.
"""

from data_manager import DataManager


class ModelManager:
    def __init__(self) -> None:
        self.weight = 0.0
        self.bias = 0.0
        self.train: list[tuple[float, float]] = []
        self.test: list[tuple[float, float]] = []

    def set_model_data(self) -> None:
        self.train, self.test = DataManager().get_data()

    def get_model(self) -> "ModelManager":
        return self

    def get_model_parameters(self) -> list[float]:
        return [self.weight, self.bias]

    def set_model_parameters(self, parameters: list[float]) -> None:
        self.weight, self.bias = parameters

    def fit_model(self, epochs: int = 50, learning_rate: float = 0.01) -> int:
        for _ in range(epochs):
            for x, y in self.train:
                error = self.weight * x + self.bias - y
                self.weight -= learning_rate * error * x
                self.bias -= learning_rate * error
        return len(self.train)

    def predict(self, inputs: list[list[float]]) -> list[float]:
        """y for each row [x]: what the trained model's server answers (MLflow scoring)."""
        return [self.weight * row[0] + self.bias for row in inputs]

    def evaluate_model(self) -> tuple[float, float, int]:
        loss = sum((self.weight * x + self.bias - y) ** 2 for x, y in self.test)
        loss /= max(len(self.test), 1)
        return loss, 1.0 / (1.0 + loss), len(self.test)
