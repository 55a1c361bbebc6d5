"""Terraform deploys the one rules file the emulator enforces (infra/firestore.rules) to Firestore."""

from __future__ import annotations

from runtune.dev.emulators import FIRESTORE_RULES
from tests.infra.terraform import INFRA, Config


def test_the_rules_file_is_released_to_the_default_database(tf: Config) -> None:
    assert FIRESTORE_RULES.parent == INFRA
    (ruleset,) = tf.of_type("google_firebaserules_ruleset").values()
    (source,) = ruleset["source"]
    (rules_file,) = source["files"]
    assert rules_file["content"] == '${file("${path.module}/firestore.rules")}'
    assert rules_file["name"] == "firestore.rules"
    assert ruleset["lifecycle"][0]["create_before_destroy"] is True

    (release,) = tf.of_type("google_firebaserules_release").values()
    assert release["name"] == "cloud.firestore"
    ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"
    assert release["ruleset_name"] == ruleset_name


def test_the_rules_api_is_enabled(tf: Config) -> None:
    assert "firebaserules.googleapis.com" in tf.locals["apis"]
