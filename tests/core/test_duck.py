"""DuckDB connections and SQL files as every stage gets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import settings
from tasks.core import duck


def test_a_model_gets_its_fragments_once_and_every_bound_filled_in() -> None:
    fragment = (settings.SQL_DIR / "fragments" / "epoch_timestamps.sql").read_text()
    for model in ("staging/stg_posts.sql", "staging/stg_comments.sql"):
        text = duck.read_sql(model)
        assert "{{" not in text and "}}" not in text
        assert text.count("end as created_at") == 1
        assert text.count("end as retrieved_at") == 1
        assert str(settings.EARLIEST_EPOCH) in text and str(settings.LATEST_EPOCH) in text
        assert "{{EARLIEST_EPOCH}}" in fragment  # the bounds live in the fragment, filled here


def test_both_staging_models_derive_the_timestamps_alike() -> None:
    """The point of the fragment: posts and comments cannot drift apart in how an epoch
    becomes a timestamp, and an epoch out of bounds (1e20, NaN) becomes null, never an error."""
    columns = duck.read_sql("fragments/epoch_timestamps.sql")
    for kind in ("posts", "comments"):
        assert columns in duck.read_sql(f"staging/stg_{kind}.sql")
    con = duck.connect()
    rows = con.execute(
        f"select {columns} from (values (1.2e9, 'false', 1.3e9), "
        "(1.0e20, '1.2e9', 'nan'::double)) t(created_utc, edited, retrieved_utc) "
        "order by created_utc"
    ).fetchall()
    assert [tuple(v is None for v in row) for row in rows] == [
        (False, True, False),
        (True, False, True),
    ]


def test_an_unknown_bound_is_a_key_error_not_a_query(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "typo.sql").write_text("select {{EARLIEST_EPOC}}")
    monkeypatch.setattr(settings, "SQL_DIR", tmp_path)
    with pytest.raises(KeyError, match="EARLIEST_EPOC"):
        duck.read_sql("typo.sql")


def test_a_connection_computes_dates_in_utc_and_bounded_ones_cap_memory() -> None:
    con = duck.connect(bounded=True, memory_limit="256MB")
    assert con.execute("select current_setting('TimeZone')").fetchone() == ("UTC",)
    limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith(("MiB", "MB")) and float(limit.split()[0]) <= 256
    assert con.execute("select current_setting('preserve_insertion_order')").fetchone() == (False,)


def test_literals_and_path_lists_survive_quotes() -> None:
    con = duck.connect()
    literal = duck.quote_literal("it's")
    assert con.execute(f"select {literal}").fetchone() == ("it's",)
    paths = ["a'b.parquet", "c.parquet"]
    assert con.execute(f"select {duck.path_list(paths)}").fetchone() == (paths,)
