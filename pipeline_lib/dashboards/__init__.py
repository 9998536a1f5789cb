"""The Voilà dashboards' library: what `notebooks/dashboards/*.ipynb` call, so the notebooks hold
no logic of their own.

`source` reads `processed` and `runs` through the db-api (public views: groups under k hidden);
`frames` turns documents into small tables (pure); `plots` and `style` draw them (matplotlib,
Okabe-Ito palette); `html` lays out cards, notices and tables; `page` is what every notebook does
around its sections (warm up, wait for a viewer, load). One module per dashboard: `overview`,
`schools` (with the widgets), `models`, `quality`. `quality_docs` computes the data-quality
documents the processing step stores for the Data quality dashboard.
"""
