"""The SLA model (DESIGN §4): FLOps keys, defaults, and errors a person can act on."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from reconciler.core.sla import (
    IMAGE_KEYS,
    Flavor,
    Platform,
    ProjectSla,
    ResourceConstraints,
    SlaError,
    TrainingConfiguration,
    TrainingMode,
    parse_sla,
)

URL = "https://github.com/owner/repo.git"
TC = "training_configuration"


def sla(**extra: Any) -> dict[str, Any]:
    return {"ml_repo_url": URL, "ml_model_flavor": "sklearn", **extra}


def error_of(data: Any, *, allow_file_repos: bool = False) -> str:
    with pytest.raises(SlaError) as info:
        parse_sla(data, allow_file_repos=allow_file_repos)
    return str(info.value)


def known_keys(model: type[BaseModel]) -> set[str]:
    keys = set(model.model_fields)
    keys |= {f.alias for f in model.model_fields.values() if f.alias}
    return keys


# --- defaults -------------------------------------------------------------------------------


def test_minimal_sla_gets_every_flops_default() -> None:
    parsed = parse_sla(sla(), allow_file_repos=False)
    assert parsed.customer_id == "Admin"
    assert parsed.ml_repo_url == URL
    assert parsed.ml_repo_ref is None
    assert parsed.ml_model_flavor is Flavor.sklearn
    assert parsed.supported_platforms == (Platform.linux_amd64,)
    assert parsed.use_devel_base_images is False
    assert parsed.verbose is False
    assert parsed.post_training_steps == ()
    training = parsed.training_configuration
    assert training.mode is TrainingMode.classic
    assert training.data_tags == ("dev",)
    assert training.training_cycles == 1
    assert training.training_rounds == 3
    assert training.min_available_clients == 1
    assert training.min_fit_clients == 1
    assert training.min_evaluate_clients == 1
    resources = parsed.resource_constraints
    assert (resources.memory, resources.vcpus, resources.storage) == (100, 1, 0)


def test_partial_nested_sections_keep_the_other_defaults() -> None:
    parsed = parse_sla(
        sla(training_configuration={"training_rounds": 9}, resource_constraints={"vcpus": 4}),
        allow_file_repos=False,
    )
    assert parsed.training_configuration == TrainingConfiguration(training_rounds=9)
    assert parsed.resource_constraints == ResourceConstraints(vcpus=4)


def test_supported_platforms_default_is_linux_amd64_as_text() -> None:
    dumped = parse_sla(sla(), allow_file_repos=False).model_dump(mode="json")
    assert dumped["supported_platforms"] == ["linux/amd64"]


@pytest.mark.parametrize("key", ["customerID", "customer_id"])
def test_customer_id_accepts_the_flops_alias_and_the_python_name(key: str) -> None:
    parsed = parse_sla(sla(**{key: "acme"}), allow_file_repos=False)
    assert parsed.customer_id == "acme"
    assert parsed.model_dump(by_alias=True)["customerID"] == "acme"


def test_a_full_flops_sla_is_accepted_as_written() -> None:
    data = {
        "customerID": "Admin",
        "verbose": True,
        "ml_repo_url": "https://github.com/Malyuk-A/flops_ml_repo_mnist_sklearn",
        "ml_model_flavor": "pytorch",
        "supported_platforms": ["linux/amd64", "linux/arm64"],
        "use_devel_base_images": True,
        "training_configuration": {
            "mode": "classic",
            "data_tags": ["mnist", "edge"],
            "training_cycles": 2,
            "training_rounds": 5,
            "min_available_clients": 3,
            "min_fit_clients": 2,
            "min_evaluate_clients": 2,
        },
        "post_training_steps": ["build_image_for_trained_model"],
        "resource_constraints": {"memory": 2000, "vcpus": 2, "storage": 10},
        "ml_repo_ref": "v1.2.0",
    }
    parsed = parse_sla(data, allow_file_repos=False)
    dumped = parsed.model_dump(mode="json", by_alias=True)
    for key, value in data.items():
        assert dumped[key] == value, key


@pytest.mark.parametrize("flavor", [f.value for f in Flavor])
def test_every_documented_flavor_is_accepted(flavor: str) -> None:
    assert parse_sla(sla(ml_model_flavor=flavor), allow_file_repos=False).ml_model_flavor == flavor


def test_duplicate_platforms_collapse_keeping_order() -> None:
    parsed = parse_sla(
        sla(supported_platforms=["linux/arm64", "linux/amd64", "linux/arm64"]),
        allow_file_repos=False,
    )
    assert parsed.supported_platforms == (Platform.linux_arm64, Platform.linux_amd64)


def test_image_inputs_are_exactly_the_image_keys_and_ignore_platform_order() -> None:
    one = parse_sla(sla(supported_platforms=["linux/arm64", "linux/amd64"]), allow_file_repos=False)
    two = parse_sla(sla(supported_platforms=["linux/amd64", "linux/arm64"]), allow_file_repos=False)
    assert set(one.image_inputs()) == set(IMAGE_KEYS)
    assert one.image_inputs() == two.image_inputs()


def test_the_model_is_frozen() -> None:
    parsed = parse_sla(sla(), allow_file_repos=False)
    with pytest.raises(ValidationError):
        parsed.verbose = True  # type: ignore[misc]


# --- errors ---------------------------------------------------------------------------------


def test_missing_ml_repo_url_says_how_to_add_it() -> None:
    message = error_of({"ml_model_flavor": "sklearn"})
    assert "missing required key `ml_repo_url`" in message
    assert "https://github.com/<owner>/<repo>.git" in message


def test_missing_flavor_lists_the_flavors() -> None:
    message = error_of({"ml_repo_url": URL})
    assert "missing required key `ml_model_flavor`" in message
    for flavor in Flavor:
        assert flavor.value in message


def test_unknown_top_level_key_suggests_the_closest() -> None:
    message = error_of({"ml_repo_urll": URL, "ml_model_flavor": "sklearn"})
    assert "unknown key `ml_repo_urll`" in message
    assert "did you mean `ml_repo_url`?" in message


def test_unknown_nested_key_is_named_by_its_path_and_gets_a_suggestion() -> None:
    message = error_of(sla(training_configuration={"training_roundz": 3}))
    assert "unknown key `training_configuration.training_roundz`" in message
    assert "did you mean `training_rounds`?" in message


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    message = error_of(sla(resource_constraints={"gpu": 1}))
    assert "unknown key `resource_constraints.gpu`" in message
    for key in ResourceConstraints.model_fields:
        assert key in message


_SECTIONS: list[tuple[tuple[str, ...], type[BaseModel]]] = [
    ((), ProjectSla),
    (("training_configuration",), TrainingConfiguration),
    (("resource_constraints",), ResourceConstraints),
]


@given(
    section=st.sampled_from(_SECTIONS),
    data=st.data(),
    extra=st.sampled_from(string.ascii_lowercase + "_"),
)
def test_a_key_with_one_extra_letter_is_suggested_back(
    section: tuple[tuple[str, ...], type[BaseModel]], data: st.DataObject, extra: str
) -> None:
    path, model = section
    key = data.draw(st.sampled_from(sorted(model.model_fields)))
    typo = key + extra
    assume(typo not in known_keys(model))
    document: dict[str, Any] = {typo: 1}
    for part in reversed(path):
        document = {part: document}
    message = error_of(sla(**document))
    dotted = ".".join((*path, typo))
    assert f"unknown key `{dotted}`" in message
    assert f"did you mean `{key}`?" in message


def test_unsupported_flavor_names_the_key_and_the_value() -> None:
    message = error_of(sla(ml_model_flavor="jax"))
    assert "key `ml_model_flavor`" in message
    assert "'jax'" in message
    assert "sklearn" in message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (sla(verbose=[1]), "verbose"),
        (sla(ml_repo_url=42), "ml_repo_url"),
        (sla(customerID=["a"]), "customerID"),
        (sla(training_configuration={"training_rounds": "many"}), f"{TC}.training_rounds"),
        (sla(training_configuration={"min_fit_clients": 0}), f"{TC}.min_fit_clients"),
        (sla(training_configuration={"mode": "ring"}), "training_configuration.mode"),
        (sla(training_configuration=[1, 2]), "training_configuration"),
        (sla(resource_constraints={"memory": -1}), "resource_constraints.memory"),
        (sla(supported_platforms=["windows/amd64"]), "supported_platforms"),
        (sla(supported_platforms="linux/amd64"), "supported_platforms"),
        (sla(post_training_steps=[{"a": 1}]), "post_training_steps"),
    ],
)
def test_wrong_types_and_values_name_the_key(data: dict[str, Any], key: str) -> None:
    assert f"`{key}" in error_of(data)


def test_an_empty_platform_list_is_an_error_with_an_example() -> None:
    message = error_of(sla(supported_platforms=[]))
    assert "supported_platforms" in message
    assert "[linux/amd64]" in message


def test_every_problem_is_reported_in_one_line() -> None:
    message = error_of({"ml_repo_urll": URL, "ml_model_flavor": "jax", "verbos": True})
    assert "\n" not in message
    for fragment in ("ml_repo_urll", "ml_model_flavor", "verbos", "`ml_repo_url`"):
        assert fragment in message


@pytest.mark.parametrize(("document", "kind"), [(None, "empty"), ([1], "list"), ("x", "str")])
def test_a_document_that_is_not_a_mapping_is_an_error(document: Any, kind: str) -> None:
    message = error_of(document)
    assert kind in message
    assert "mapping" in message


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("--upload-pack=evil", "'-'"),
        ("-x", "'-'"),
        ("main..evil", "'..'"),
        ("has space", "no spaces"),
        ("", "must not be empty"),
        ("a\nb", "no spaces"),
    ],
)
def test_bad_ml_repo_ref_is_an_error_naming_the_key(ref: str, fragment: str) -> None:
    message = error_of(sla(ml_repo_ref=ref))
    assert "key `ml_repo_ref`" in message
    assert fragment in message


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% /tmp/pwned", "fd::17", "-uhttps://example.org/o/r", "--upload-pack=x"],
)
def test_dangerous_repo_urls_are_errors_naming_the_key(url: str) -> None:
    for allow in (False, True):
        message = error_of(sla(ml_repo_url=url), allow_file_repos=allow)
        assert "key `ml_repo_url`" in message


@pytest.mark.parametrize("url", ["file:///srv/git/repo", "/srv/git/repo", "./repo", "../repo"])
def test_local_repositories_need_allow_file_repos(url: str) -> None:
    assert "allow_file_repos" in error_of(sla(ml_repo_url=url), allow_file_repos=False)
    assert parse_sla(sla(ml_repo_url=url), allow_file_repos=True).ml_repo_url == url


@given(st.text())
def test_any_customer_id_text_is_kept_verbatim(text: str) -> None:
    assert parse_sla(sla(customerID=text), allow_file_repos=False).customer_id == text


@pytest.mark.parametrize(
    ("training", "fragment"),
    [
        ({"mode": "hierarchical"}, "training_configuration.mode`: mode `hierarchical`"),
        ({"training_rounds": 0}, "training_configuration.training_rounds"),
        ({"training_rounds": 100_000}, "training_configuration.training_rounds"),
        ({"data_tags": ["../etc"]}, "data tag '../etc' is not a folder name"),
        ({"data_tags": ["a/b"]}, "data tag 'a/b'"),
        ({"data_tags": [".hidden"]}, "data tag '.hidden'"),
    ],
)
def test_training_settings_a_run_cannot_use_are_refused_naming_the_key(
    training: dict[str, Any], fragment: str
) -> None:
    data = {"ml_repo_url": "https://example.org/o/r.git", "ml_model_flavor": "sklearn",
            "training_configuration": training}
    with pytest.raises(SlaError) as info:
        parse_sla(data, allow_file_repos=False)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        (["build_image_for_trained_model", "publish_to_moon"], "post_training_steps"),
        (["deploy_trained_model_image"], "list build_image_for_trained_model too"),
    ],
)
def test_post_training_steps_are_known_and_deploy_needs_the_image(
    steps: list[str], fragment: str
) -> None:
    data = {"ml_repo_url": "https://example.org/o/r.git", "ml_model_flavor": "sklearn",
            "post_training_steps": steps}
    with pytest.raises(SlaError) as info:
        parse_sla(data, allow_file_repos=False)
    assert fragment in str(info.value)
    ok = parse_sla({**data, "post_training_steps": ["build_image_for_trained_model",
                                                    "deploy_trained_model_image"]},
                   allow_file_repos=False)
    assert [s.value for s in ok.post_training_steps] == ["build_image_for_trained_model",
                                                         "deploy_trained_model_image"]
