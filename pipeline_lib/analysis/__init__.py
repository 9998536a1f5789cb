"""The processing step's analyses: pure functions from DataFrames to result objects.

One module per analysis (`descriptives` and `correlations` run on Spark; `ols`, `multilevel`,
`classification` and `regression` on pandas, with `mllib` for data above `max_model_rows`).
`documents` turns results into `ResultDocument`s, `interpret` writes their sentences, `plots`
draws them. Nothing here reads or writes the database: `pipeline_lib.process_job` does.
"""
