"""The train image's dependency layer is keyed on what it installs, not on the whole pyproject.toml."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from ops.image_requirements import layer_files, requirements
from ops.procs import ROOT

PYPROJECT = """\
[project]
name = "cloudhop"
version = "0.1.0"
dependencies = ["prefect>=3.9,<3.10", "torch>=2.4,<3", "pandas>=2.2"]

[project.optional-dependencies]
aws = ["boto3>=1.34", "s3fs>=2024.6"]
gcp = ["gcsfs>=2024.6"]
all = ["cloudhop[aws,gcp]"]
test = ["cloudhop[all]", "pytest>=8"]

[tool.mypy]
files = ["cloudhop"]
"""
CONSTRAINTS = "# pins\ntorch==2.13.0\npandas<3.1\n"
EXTRAS, DROP = ["aws"], ["torch"]


def key(pyproject: str = PYPROJECT, constraints: str = CONSTRAINTS) -> dict[str, str]:
    return layer_files(pyproject, constraints, EXTRAS, DROP)


def test_the_layer_installs_the_runtime_dependencies_and_the_image_extras_without_the_torch_pin():
    files = key()
    assert files["requirements.txt"].splitlines() == [
        "boto3>=1.34", "pandas>=2.2", "prefect>=3.9,<3.10", "s3fs>=2024.6", "torch>=2.4,<3"]
    assert files["constraints.txt"] == "# pins\npandas<3.1\n"


@pytest.mark.parametrize("edit", [
    ('"pytest>=8"]', '"pytest>=8", "pytest-xdist>=3.5"]'),  # a test-only dependency
    ('version = "0.1.0"', 'version = "0.2.0"'),
    ('files = ["cloudhop"]', 'files = ["cloudhop", "ops"]'),
    ('gcp = ["gcsfs>=2024.6"]', 'gcp = ["gcsfs>=2024.6", "google-cloud-run>=0.10"]'),  # an extra the image skips
    ('dependencies = ["prefect>=3.9,<3.10", "torch>=2.4,<3", "pandas>=2.2"]',
     'dependencies = ["pandas>=2.2", "prefect>=3.9,<3.10", "torch>=2.4,<3"]'),  # the same list reordered
], ids=["test-dependency", "version", "tool-settings", "skipped-extra", "reordered"])
def test_edits_that_install_nothing_new_keep_the_layer(edit):
    old, new = edit
    assert old in PYPROJECT
    assert key(PYPROJECT.replace(old, new)) == key()


@pytest.mark.parametrize("edit", [
    ('"pandas>=2.2"]', '"pandas>=2.2", "polars>=1"]'),  # a runtime dependency
    ('"pandas>=2.2"]', '"pandas>=2.3"]'),  # a range moved
    ('aws = ["boto3>=1.34", "s3fs>=2024.6"]', 'aws = ["boto3>=1.35", "s3fs>=2024.6"]'),  # an installed extra
], ids=["runtime-dependency", "runtime-range", "installed-extra"])
def test_edits_that_change_what_is_installed_change_the_layer(edit):
    old, new = edit
    assert old in PYPROJECT
    assert key(PYPROJECT.replace(old, new)) != key()


def test_a_constraint_change_changes_the_layer_unless_it_is_the_dropped_torch_pin():
    assert key(constraints=CONSTRAINTS + "numpy<2.7\n") != key()
    assert key(constraints=CONSTRAINTS.replace("torch==2.13.0", "torch==2.14.0")) == key()


def test_extras_naming_the_project_are_followed_and_an_unknown_extra_is_named():
    assert requirements(tomllib.loads(PYPROJECT), ["all"]) == requirements(tomllib.loads(PYPROJECT), ["aws", "gcp"])
    with pytest.raises(ValueError, match="no extra 'azure'; its extras: all, aws, gcp, test"):
        requirements(tomllib.loads(PYPROJECT), ["azure"])


def test_the_train_dockerfile_installs_from_the_requirements_stage_only(tmp_path):
    """The image's stage copies the two computed files before its pip install, and pyproject.toml
    only after it: a pyproject.toml edit can reach no layer before the sources'."""
    text = re.sub(r"\\\n", " ", (ROOT / "docker/train.Dockerfile").read_text())
    req_stage, image_stage = re.split(r"^FROM ", text, flags=re.M)[-2:]
    assert req_stage.split()[1:3] == ["AS", "requirements"]
    args = re.search(r"python image_requirements\.py (--extras \S+ --drop \S+)", req_stage)
    assert args is not None
    install = image_stage.index("-r /tmp/requirements/requirements.txt")
    assert image_stage.index("COPY --from=requirements /opt/requirements/ /tmp/requirements/") < install
    assert not re.search(r"\bCOPY\b[^\n]*(pyproject\.toml|constraints\.txt)", image_stage[:install])
    # the script as the stage runs it, on this repository's files: the providers' SDKs, no test tools
    subprocess.run([sys.executable, str(ROOT / "ops/image_requirements.py"), *args[1].split(),
                    str(ROOT / "pyproject.toml"), str(ROOT / "constraints.txt"), str(tmp_path)],
                   check=True, capture_output=True)
    names = {re.split(r"[<>=\[;]", r)[0] for r in (tmp_path / "requirements.txt").read_text().split()}
    assert {"prefect", "torch", "boto3", "gcsfs", "adlfs", "kubernetes-validate"} <= names
    assert not names & {"pytest", "moto", "mypy", "cloudhop", "prefect-docker"}
    assert "torch" not in (tmp_path / "constraints.txt").read_text()
