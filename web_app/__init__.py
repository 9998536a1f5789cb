"""The FastAPI web app: student form, JSON API, results and runs pages (built on the db-api)."""
