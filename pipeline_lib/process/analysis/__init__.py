"""The processing step's analyses: pure functions from DataFrames to result objects.

One module per analysis (`descriptives`, `correlations` and `distributions` run on Spark; `ols`,
`multilevel`, `classification` and `regression` on pandas, with `mllib` for data above
`max_model_rows`). `descriptive_results` and `model_results` turn results into `ResultDocument`s,
`interpret` writes their sentences; `pipeline_lib.views` draws them. Nothing here reads or writes
the database: `pipeline_lib.process.job` does.
"""
