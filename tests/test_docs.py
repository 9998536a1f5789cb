"""The documentation under docs/ stays true: generated pages match their generators, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline_lib.cli import contract_doc, settings_doc
from pipeline_lib.contract.fields import SCHOOL_FIELDS, STUDENT_FIELDS
from pipeline_lib.settings import PROJECT_DIR, Settings, db_api_token, jwt_secret

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

GENERATED = [
    pytest.param(DOCS / "data-contract.md", contract_doc, id="data-contract"),
    pytest.param(DOCS / "settings.md", settings_doc, id="settings"),
]


@pytest.mark.parametrize(("page", "generator"), GENERATED)
def test_generated_page_is_up_to_date(page: Path, generator: object) -> None:
    fresh = generator.render_markdown()  # type: ignore[attr-defined]
    regenerate = generator.REGENERATE  # type: ignore[attr-defined]
    assert page.read_text() == fresh, f"{page.relative_to(ROOT)} is out of date: run `{regenerate}`"


def test_data_contract_page_names_every_field_with_its_range() -> None:
    page = contract_doc.render_markdown()
    for f in (*STUDENT_FIELDS, *SCHOOL_FIELDS):
        assert f"| `{f.name}` |" in page
        if f.minimum is not None:
            assert f"{f.minimum:g} to {f.maximum:g}" in page


def test_settings_page_has_one_row_per_setting_and_no_path_of_this_machine() -> None:
    page = settings_doc.render_markdown()
    for name in Settings.model_fields:
        assert f"| `WORKBENCH_{name.upper()}` |" in page
    assert str(PROJECT_DIR) not in page
    assert "| `WORKBENCH_DATA_DIR` | `<checkout>/var` |" in page


def test_generated_secrets_are_where_the_settings_page_says(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, db_api_token=None, jwt_secret=None)
    db_api_token(settings, create=True)
    jwt_secret(settings)
    for name, where in settings_doc.GENERATED_SECRETS.items():
        assert name in Settings.model_fields
        assert (tmp_path / where.removeprefix("<data dir>/")).is_file(), where


def test_fallback_meanings_name_real_settings() -> None:
    assert set(settings_doc.FALLBACK_MEANINGS) <= set(Settings.model_fields)


def test_type_and_default_texts() -> None:
    fields = Settings.model_fields
    assert settings_doc.type_text(fields["db_api_max_message_mb"]) == "integer, 1..1024"
    assert settings_doc.type_text(fields["run_lease_seconds"]) == "number, > 0, <= 86400"
    assert settings_doc.default_text("db_api_scan_workers", fields["db_api_scan_workers"]).startswith("`min(")
    assert settings_doc.default_text("runs_dir", fields["runs_dir"]) == "unset"


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in _LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_readme_points_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/)" in readme and "](docs/settings.md)" in readme
    assert "DESIGN.md" not in readme
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
