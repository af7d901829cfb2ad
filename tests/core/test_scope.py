"""RunScope, the one definition of a run's days and subreddits that the model, the checks and
the load share."""

from __future__ import annotations

import pyarrow as pa

from tasks.core import RunScope, duck


def test_a_scope_is_sorted_unique_and_lower_case() -> None:
    scope = RunScope.of(["2024-03-02", "2024-03-01", "2024-03-02"], ["Python", "python", "rust"])
    assert scope == RunScope(("2024-03-01", "2024-03-02"), ("python", "rust"))
    assert scope.covers("PYTHON") and not scope.covers("golang")
    assert scope.describe() == "2 day(s) 2024-03-01..2024-03-02, python, rust"
    assert RunScope.of([]).describe() == "0 day(s) no day, every subreddit"


def test_its_sql_and_its_arrow_filter_keep_the_same_rows() -> None:
    rows = {"subreddit": ["Python", "rust", None, "golang", "o'brien"], "n": [1, 2, 3, 4, 5]}
    batch = pa.RecordBatch.from_pydict(rows)
    con = duck.connect()
    con.register("t", pa.Table.from_batches([batch]))
    for scope in (RunScope.of(["d"], ["python", "o'brien"]), RunScope.of(["d"])):
        where = scope.subreddit_sql()
        in_sql = [r[0] for r in con.execute(f"select n from t where {where}").fetchall()]
        in_arrow = scope.filter_batch(batch).column("n").to_pylist()
        assert sorted(in_sql) == sorted(in_arrow)
    assert RunScope.of(["d"], ["python", "o'brien"]).filter_batch(batch).column(
        "n"
    ).to_pylist() == [1, 5]
    assert RunScope.of(["d"]).subreddit_sql() == "true"
