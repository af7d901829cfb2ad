"""Example DAG: run the reddit-pipeline Prefect deployment once a day, over the day's window.

Airflow's data interval becomes the pipeline's [since, until) window, sent to prefect.yaml's
`reddit-pipeline/daily` deployment, so a backfill in Airflow (`airflow backfill create --dag-id
reddit_pipeline_daily --from-date ... --to-date ...`) is one pipeline run per day of history,
each over exactly its day; the pipeline's MERGE keeps a rerun of a day harmless, and a run
with since and until re-reads its window whatever the watermarks (later days already run).

What can be changed without editing this file, most specific first:
- a run's conf (`airflow dags trigger -c '{...}'`, `airflow dags test -c '{...}'`), which
  overrides the params `deployment`, `subreddits` and `config`;
- the Airflow Variables `reddit_pipeline_deployment` (a name) and `reddit_pipeline_config`
  (a JSON object of PipelineConfig fields, e.g. warehouse_path, lake_dir, state_path, source);
- the connection `prefect_default` (the Prefect API and its credentials);
- the environment variables REDDIT_PIPELINE_DAG_RETRIES, REDDIT_PIPELINE_DAG_RETRY_DELAY
  (seconds) and REDDIT_PIPELINE_DAG_POLL_INTERVAL (seconds), read when the file is parsed.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from prefect_airflow_bridge import PrefectRunDeploymentOperator

DEFAULT_DEPLOYMENT = "reddit-pipeline/daily"
# Read when the file is parsed (environment only, no Variable lookups at parse time): the tests
# shorten the waits; production keeps the defaults.
RETRIES = int(os.environ.get("REDDIT_PIPELINE_DAG_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("REDDIT_PIPELINE_DAG_RETRY_DELAY", "300")))
POLL_INTERVAL = float(os.environ.get("REDDIT_PIPELINE_DAG_POLL_INTERVAL", "30"))


def pipeline_config(
    params: dict[str, Any],
    variable_config: dict[str, Any] | None,
    data_interval_start: datetime,
    data_interval_end: datetime,
) -> dict[str, Any]:
    """The flow's `config` parameter: the Variable's settings, then the run's params, and
    always the data interval as the window (that is what makes backfills map to windows)."""
    config: dict[str, Any] = {**(variable_config or {}), **(params.get("config") or {})}
    if params.get("subreddits"):
        config["subreddits"] = list(params["subreddits"])
    config["since"] = data_interval_start.isoformat()
    config["until"] = data_interval_end.isoformat()
    return config


with DAG(
    dag_id="reddit_pipeline_daily",
    description="The reddit-pipeline Prefect deployment over each day's window",
    # Cron *data interval* timetable: a run covers [previous midnight, midnight). Airflow 3's
    # plain "@daily" would give a run an empty interval (start == end).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 3, 1),
    catchup=False,
    max_active_runs=1,
    # Templates render to Python objects, so the flow receives a JSON object, not its repr.
    render_template_as_native_obj=True,
    user_defined_macros={"pipeline_config": pipeline_config},
    params={
        "deployment": Param("", type="string", description="flow/deployment; '' = Variable"),
        "subreddits": Param([], type="array", description="Subreddits; [] = every one"),
        "config": Param({}, type="object", description="More PipelineConfig fields"),
    },
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["reddit", "prefect"],
) as dag:
    PrefectRunDeploymentOperator(
        task_id="run_reddit_pipeline",
        deployment=(
            "{{ params.deployment or var.value.get('reddit_pipeline_deployment', '"
            + DEFAULT_DEPLOYMENT
            + "') }}"
        ),
        parameters={
            "config": (
                "{{ pipeline_config(params, var.json.get('reddit_pipeline_config', {}),"
                " data_interval_start, data_interval_end) }}"
            )
        },
        poll_interval=POLL_INTERVAL,
        timeout=6 * 3600,
    )
