"""Stage functions of the Reddit pipeline: plain functions that do the work, thin Prefect tasks."""
