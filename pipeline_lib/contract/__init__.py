"""The data contract, declared once: student and school fields (`fields`), collection names
(`collections`) and web accounts (`users`). Imports nothing else of the workbench."""
