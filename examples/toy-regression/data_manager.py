"""Synthetic data for the example: y = 2x + 1 with a little deterministic noise."""


class DataManager:
    def get_data(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        points = [(x / 10, 2 * (x / 10) + 1 + ((x * 7) % 5 - 2) / 50) for x in range(50)]
        return points[:40], points[40:]
