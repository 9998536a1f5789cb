"""Spark: the session a run uses (`session`) and the `workbench` Python data source (`source`)."""
