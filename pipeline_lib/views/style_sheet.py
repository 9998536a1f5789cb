"""The dashboards' style sheet, on its own: an archived snapshot page needs it and nothing else of
`views.html` (which imports pandas, a third of a second at the end of `workbench run`)."""

CSS = """
<style>
.wb-dash { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px;
           color: #1a1a1a; line-height: 1.45; }
.wb-dash h2 { font-size: 1.35em; margin: 1.2em 0 0.4em; }
.wb-cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 0.5em 0 1em; }
.wb-card { border: 1px solid #d0d0d0; border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.wb-card .wb-value { font-size: 1.7em; font-weight: 600; }
.wb-card .wb-label { color: #4d4d4d; font-size: 0.9em; }
.wb-notice { border-left: 5px solid #0072B2; background: #eef5fb; padding: 10px 14px; margin: 0.6em 0; }
.wb-notice.wb-warning { border-color: #D55E00; background: #fdf1ea; }
.wb-notice ul { margin: 0.3em 0 0; padding-left: 1.2em; }
.wb-notice.wb-empty { border-color: #8C8C8C; background: #f4f4f4; }
.wb-table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.95em; }
.wb-table th, .wb-table td { border-bottom: 1px solid #e0e0e0; padding: 4px 10px; text-align: right; }
.wb-table th { background: #f4f4f4; }
.wb-table td.wb-text, .wb-table th.wb-text { text-align: left; }
.wb-table td.wb-hidden { color: #6b6b6b; font-style: italic; }
.wb-table td.wb-note { text-align: left; color: #4d4d4d; font-size: 0.9em; }
.wb-plot { margin: 0.4em 0 1em; }
.wb-plot img { max-width: 100%; height: auto; }
.wb-plot figcaption { color: #4d4d4d; font-size: 0.9em; }
.wb-meta { color: #4d4d4d; font-size: 0.9em; }
</style>
"""
