"""flops_utils, our implementation of the module FLOps ML repositories import."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import pytest
from actors_support import ACTORS_DIR, write_mnist_parquet  # first: puts actors/ on sys.path
from flops_utils import PROVIDED
from flops_utils.data_files import DataError
from flops_utils.flops_learner_files_wrapper import load_ml_data
from flops_utils.ml_repo_building_blocks import load_dataset
from flops_utils.ml_repo_templates import DataManagerTemplate, ModelManagerTemplate


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_mnist_parquet(root / "mnist" / "part-0.parquet", 30, seed=1)
    write_mnist_parquet(root / "mnist" / "part-1.parquet", 20, seed=2)
    write_mnist_parquet(root / "extra" / "a.parquet", 10, seed=3)
    return root


def test_load_dataset_reads_every_file_of_every_tag_as_numpy_images(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOPS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FLOPS_DATA_TAGS", "mnist, extra")
    dataset = load_dataset()
    dataset.set_format("numpy")
    images = dataset["image"]
    assert len(dataset) == 60
    assert images.shape == (60, 28, 28)
    assert images.dtype.kind in "iu"  # datasets' numpy formatter widens integers to int64
    assert images.max() == 255
    assert images.reshape((len(dataset), -1)).shape == (60, 784)
    assert dataset["label"][:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_load_dataset_with_format_and_explicit_arguments(data_dir: Path) -> None:
    dataset = load_dataset(["extra"], data_dir).with_format("numpy")
    assert dataset["image"].shape == (10, 28, 28)


def test_the_earlier_name_load_ml_data_is_load_dataset() -> None:
    assert load_ml_data is load_dataset


def test_missing_tag_names_the_tag_the_directory_and_the_tags_present(data_dir: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(["cifar"], data_dir)
    message = str(caught.value)
    assert "'cifar'" in message and str(data_dir / "cifar") in message
    assert "extra, mnist" in message


def test_missing_data_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(["mnist"], tmp_path / "nowhere")


def test_tag_folder_without_parquet_files(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "readme.txt").write_text("no data here")
    with pytest.raises(DataError, match=r"data tag 'mnist': no \*\.parquet files in .*mnist"):
        load_dataset(["mnist"], tmp_path)


def test_unreadable_file_names_tag_and_file(data_dir: Path) -> None:
    broken = data_dir / "mnist" / "part-2.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(DataError) as caught:
        load_dataset(["mnist"], data_dir)
    assert "data tag 'mnist': cannot read" in str(caught.value)
    assert str(broken) in str(caught.value)


def test_files_that_do_not_fit_together(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_mnist_parquet(tmp_path / "a" / "x.parquet", 10, seed=1)
    (tmp_path / "b").mkdir()
    pq.write_table(pa.table({"image": ["text"], "label": ["seven"]}), tmp_path / "b" / "y.parquet")
    with pytest.raises(DataError, match="do not share one schema"):
        load_dataset(["a", "b"], tmp_path)


@pytest.mark.parametrize("value", ["", "  ", "a,,b", "../etc", "x/y"])
def test_bad_data_tags(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOPS_DATA_TAGS", value)
    with pytest.raises(DataError, match="FLOPS_DATA_TAGS"):
        load_dataset(directory=tmp_path)


def test_templates_are_abstract_with_the_flops_methods() -> None:
    assert ModelManagerTemplate.__abstractmethods__ == {
        "set_model_data",
        "get_model",
        "get_model_parameters",
        "set_model_parameters",
        "fit_model",
        "evaluate_model",
    }
    assert DataManagerTemplate.__abstractmethods__ == {"_prepare_data", "get_data"}

    class Incomplete(ModelManagerTemplate):
        def get_model(self) -> None:
            return None

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


def test_provided_lists_exactly_what_the_modules_export() -> None:
    raw = json.loads((ACTORS_DIR / "flops_utils" / "provided.json").read_text())
    assert {m: frozenset(n) for m, n in raw["modules"].items()} == PROVIDED
    for module_name, names in PROVIDED.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert hasattr(module, name), f"{module_name}.{name}"
    assert PROVIDED["flops_utils.ml_repo_building_blocks"] >= {"load_dataset"}


def test_logger_writes_to_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    from flops_utils.logging import logger

    assert isinstance(logger, logging.Logger)
    logger.warning("hello from a repository")
    out, err = capsys.readouterr()
    assert out == ""
    assert "hello from a repository" in err
