"""The Voilà dashboards' library: what `notebooks/dashboards/*.ipynb` call, so the notebooks hold
no logic of their own.

`source` reads `processed` and `runs` through the db-api (public views: groups under k hidden);
`page` is what every notebook does around its sections (warm up, wait for a viewer, load). One
module per dashboard: `overview`, `schools` (with the widgets), `statistical_models` (the Models
page), `quality`. Documents are looked up by the keys of `contract.result_keys`; tables, frames,
plots, style and HTML come from `pipeline_lib.views`.
"""
