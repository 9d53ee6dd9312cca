"""The documentation says what the code does: the configuration reference is generated from the settings."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_up_to_date():
    from scripts.config_reference import OUTPUT, render

    assert OUTPUT.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run .venv/bin/python scripts/config_reference.py")


def test_every_component_default_is_in_the_reference():
    from rasa_kd.components.bert_intent_classifier import BertIntentClassifier
    from rasa_kd.components.distilled_intent_classifier import DistilledIntentClassifier
    from rasa_kd.components.student_intent_classifier import StudentIntentClassifier

    reference = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for component in (BertIntentClassifier, StudentIntentClassifier, DistilledIntentClassifier):
        for key in component.get_default_config():
            assert f"| `{key}` |" in reference, (component.__name__, key)


def test_links_between_the_documents_resolve():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not target.startswith("http") and ("." in target or "/" in target):  # not `[x](y)` markup examples
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_stays_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
