"""The data contract, declared once: student and school fields (`fields`), result keys
(`result_keys`), collection names (`collections`) and web accounts (`users`). Imports nothing
else of the workbench."""
