"""One presentation layer for result documents: tables (`frames`), plots, style, HTML and the
notebook report, used by the notebooks, the dashboards and the web app."""
