"""Runs of the pipeline's notebooks: papermill execution, run records, single flight, schedules."""
