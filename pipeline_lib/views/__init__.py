"""One presentation layer for result documents, used by the process notebook, the dashboards and
the web app. A module per job:

- `tables`: a result table (stored or public) as a DataFrame; the only place tables become frames.
- `frames`: the small frames the dashboards draw (histograms, group summaries, schools, runs).
- `palette`: the colours (Okabe-Ito, one per known group); `style`: the matplotlib style, figure
  margins, PNG and HTML images.
- `plots`: every matplotlib chart; its panels (boxes, forest, calibration) serve the dashboards'
  figures and `result_figures`, the process report's figure per result key.
- `report`: how the process notebook shows a result; `disclosure`: how it shows the disclosure
  control's outcome (audit failures, withheld documents, hidden and held rows).
- `html`: the dashboards' HTML pieces; `charts`: SVG bar charts without matplotlib (the web app's
  results page and the All results dashboard).
"""
