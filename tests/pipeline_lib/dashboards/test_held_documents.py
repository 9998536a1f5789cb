"""A document the disclosure control holds whole (fewer than k students changed since it was
published) shows in the dashboards as it was published, saying since when, as the results page
does; stored in a real db-api and read as the pages read them (`load`)."""

from __future__ import annotations

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import PROCESSED
from pipeline_lib.dashboards import statistical_models
from pipeline_lib.process.results import (
    DocumentProtection,
    HeldDocument,
    ResultDocument,
    ResultTable,
    held_note,
    suppress,
)
from tests.pipeline_lib.views.sample_results import FIRST, SECOND, K

NOTE = held_note(K, FIRST)


def _null_model(grand_mean: float, n_students: int) -> ResultDocument:
    estimates = {
        "grand_mean": grand_mean,
        "between_school_variance": 16.0,
        "within_school_variance": 64.0,
        "icc": 0.2,
        "n_students": n_students,
    }
    table = ResultTable(
        name="estimates",
        title="Estimates (REML)",
        columns=["quantity", "value"],
        rows=[[name, value] for name, value in estimates.items()],
        group_size_column=None,
    )
    return ResultDocument(
        key=keys.MIXEDLM_NULL,
        title="Multilevel null model",
        analysis="mixedlm",
        scope="null",
        run_id="run-1",
        computed_at=FIRST,
        n_input=n_students,
        tables=[table],
    )


def test_the_models_page_shows_a_held_model_as_published_and_since_when(sqlite_client: DbApiClient) -> None:
    published = suppress(_null_model(50.87, 400), K)
    now = _null_model(51.23, 401).model_copy(update={"run_id": "run-2", "computed_at": SECOND})
    held = DocumentProtection(k=K, held=HeldDocument(public=published, published_at=FIRST))
    stored = now.model_copy(update={"protection": held})
    sqlite_client.put_document(PROCESSED, stored.key, stored.model_dump(mode="json"))
    results = statistical_models.load(sqlite_client, K)
    assert results.not_updated == {keys.MIXEDLM_NULL: NOTE}
    section = statistical_models.multilevel_section(results)
    assert NOTE[:1].upper() + NOTE[1:] in section  # the results page's words
    assert "50.9" in section and "51.2" not in section  # the grand mean as published
