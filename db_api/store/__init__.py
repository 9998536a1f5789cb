"""Store backends behind one interface; `open_store` picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from db_api.store.base import Store


def open_store(data_dir: Path, mongo_uri: str | None = None) -> Store:
    """MongoDB when a URI is given, else the embedded SQLite store under `data_dir`."""
    if mongo_uri:
        from db_api.store.mongo import MongoStore

        return MongoStore(mongo_uri)
    from db_api.store.sqlite import SqliteStore

    return SqliteStore(Path(data_dir) / "db" / "workbench.sqlite3")
