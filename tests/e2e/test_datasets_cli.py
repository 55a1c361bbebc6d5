"""`runtune datasets upload/list/show/rm` against the running platform."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from runtune.cli import datasets as datasets_cli
from runtune.cli.main import app
from tests.datasets.builders import noisy_jpeg, write_zip
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_upload_list_show_rm(platform, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
    # Small chunks so the resumable upload really goes in several requests.
    monkeypatch.setattr(datasets_cli, "CHUNK", 256 * 1024)
    account = sign_up(platform.auth_host, password="correct-horse")
    runner = CliRunner()
    login = ["login", "--email", account["email"], "--password", "correct-horse", "--gateway", platform.gateway_url]
    assert runner.invoke(app, [*login, "--auth-emulator", platform.auth_host]).exit_code == 0
    files = {f"{label}/{i}.jpg": noisy_jpeg(i + 100 * n) for n, label in enumerate(("cat", "dog")) for i in range(40)}
    archive = write_zip(tmp_path / "pets.zip", files)
    assert archive.stat().st_size > 3 * 256 * 1024

    result = runner.invoke(app, ["datasets", "upload", str(archive), "--name", "pets", "--mapping", "user=Which pet?"])
    assert result.exit_code == 0, result.output
    assert "ready" in result.output and "cat 40, dog 40" in result.output
    dataset_id = result.output.split("Created ")[1].split()[0]

    result = runner.invoke(app, ["datasets", "list"])
    assert result.exit_code == 0 and dataset_id in result.output and "pets" in result.output
    result = runner.invoke(app, ["datasets", "show", dataset_id])
    assert result.exit_code == 0 and "classification (vision)" in result.output
    result = runner.invoke(app, ["datasets", "rm", dataset_id])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["datasets", "show", dataset_id])
    assert result.exit_code == 1 and "No dataset with id" in result.output


def test_mapping_option_forms() -> None:
    assert datasets_cli.parse_mapping(['{"image": "f", "label": "y"}']) == {"image": "f", "label": "y"}
    assert datasets_cli.parse_mapping(["image=f", "user=What, exactly?"]) == {"image": "f", "user": "What, exactly?"}
    assert datasets_cli.parse_mapping([]) is None
