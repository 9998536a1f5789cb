"""Benchmark of the db-api on the embedded store, each figure beside its ceiling.

For 1,000,000 student-like records (15 fields): bulk write, full scan to pandas, partitioned
scan with 2 readers, and CommitClean, through a real `workbench db-api` process on loopback.
Ceilings, measured in the same run: plain `sqlite3` + BSON (the store) and pre-encoded Arrow
IPC over a bare gRPC stream on loopback (the transport). Prints the median of --repeat runs.

    python tests/bench/bench_db_api.py [--records N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import bson
import grpc
import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.arrow_codec import ipc_to_table, table_to_ipc
from pipeline_lib.wire.requests import table_to_pandas

TOKEN = "bench"
WRITE_BATCH = 10_000
SCAN_BATCH = 2_000
COMMIT_BATCH = 5_000
CEILING_SERVICE = "/bench.Ceiling/"


def student_records(n: int, seed: int = 7) -> pa.Table:
    """Student-like records: ids, codes, categories, numbers with missing values, a timestamp."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("sub-", np.arange(n).astype(str))
    schools = np.char.add("S", rng.integers(1, 160, n).astype(str))
    age = pa.array(rng.integers(10, 19, n), mask=rng.random(n) < 0.05)
    return pa.table(
        {
            "submission_id": ids,
            "school_id": schools,
            "student_ref": np.char.add("ref", rng.integers(0, 10**6, n).astype(str)),
            "sex": rng.choice(["female", "male", "other"], n, p=[0.49, 0.49, 0.02]),
            "minority": rng.random(n) < 0.3,
            "ses": rng.normal(0, 0.8, n),
            "math_score": rng.normal(13, 7, n),
            "age": age,
            "study_hours_week": rng.gamma(2.0, 3.0, n),
            "absences": rng.poisson(4, n),
            "consent": np.ones(n, dtype=bool),
            "sector": rng.choice(["public", "catholic", "private"], n),
            "size": rng.integers(100, 2500, n),
            "received_at": pa.array(
                (1.79e12 + rng.integers(0, 10**9, n)).astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")
            ),
            "source": rng.choice(["form", "api", "bulk"], n),
        }
    )


def as_submitted(table: pa.Table) -> pa.Table:
    """The same records as the form stores them in `raw`: every value text, missing as null."""
    return pa.table({name: table.column(name).cast(pa.string()) for name in table.column_names})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- ceilings ------------------------------------------------------------------------------------


def _sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for name in ("raw", "cleaned"):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} "
            "(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc BLOB NOT NULL)"
        )
    return conn


def store_ceiling_write(docs: list[dict], path: Path) -> float:
    conn = _sqlite(path)

    def run() -> None:
        for start in range(0, len(docs), WRITE_BATCH):
            rows = [(d["_id"], bson.encode(d)) for d in docs[start : start + WRITE_BATCH]]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO raw(id, doc) VALUES (?, ?)", rows)
            conn.execute("COMMIT")

    seconds = timed(run)
    conn.close()
    return seconds


def store_ceiling_scan(path: Path) -> float:
    conn = _sqlite(path)

    def run() -> None:
        last = 0
        while rows := conn.execute(
            "SELECT seq, doc FROM raw WHERE seq > ? ORDER BY seq LIMIT ?", (last, SCAN_BATCH)
        ).fetchall():
            last = rows[-1][0]
            bson.decode_all(b"".join(r[1] for r in rows))

    seconds = timed(run)
    conn.close()
    return seconds


def store_ceiling_commit(docs: list[dict], path: Path) -> float:
    """Upsert into cleaned and delete from raw, one transaction per batch, as CommitClean does."""
    conn = _sqlite(path)

    def run() -> None:
        for start in range(0, len(docs), COMMIT_BATCH):
            chunk = docs[start : start + COMMIT_BATCH]
            rows = [(d["_id"], bson.encode(d)) for d in chunk]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO cleaned(id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            conn.executemany("DELETE FROM raw WHERE id = ?", [(d["_id"],) for d in chunk])
            conn.execute("COMMIT")

    seconds = timed(run)
    conn.close()
    return seconds


def store_ceilings(frame: pd.DataFrame, key: str, path: Path) -> dict[str, float]:
    """The store's scan and CommitClean ceilings for these records (`key` the id), on a file of their own:
    what a run reading and committing the same records through the db-api cannot beat."""
    docs = [{"_id": record[key], **record} for record in frame.to_dict("records")]
    store_ceiling_write(docs, path)
    seconds = {"scan": store_ceiling_scan(path), "commit": store_ceiling_commit(docs, path)}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return seconds


def serve_transport_ceiling(port: int, payloads_path: str) -> None:
    """A bare gRPC server: streams pre-encoded Arrow IPC messages, or swallows them."""
    data = Path(payloads_path).read_bytes()
    payloads, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 8], "little")
        payloads.append(data[offset + 8 : offset + 8 + size])
        offset += 8 + size

    def scan(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from payloads

    def write(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return str(sum(1 for _ in requests)).encode()

    identity = {"request_deserializer": None, "response_serializer": None}
    handler = grpc.method_handlers_generic_handler(
        "bench.Ceiling",
        {
            "Scan": grpc.unary_stream_rpc_method_handler(scan, **identity),
            "Write": grpc.stream_unary_rpc_method_handler(write, **identity),
        },
    )
    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[handler], options=options)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def transport_ceiling(table: pa.Table, workdir: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds to stream the table as pre-encoded Arrow IPC: write (client to server), scan (to pandas)."""
    write_payloads = [table_to_ipc(t) for t in table.to_batches(max_chunksize=WRITE_BATCH)]
    scan_payloads = [table_to_ipc(t) for t in table.to_batches(max_chunksize=SCAN_BATCH)]
    path = workdir / "payloads.bin"
    path.write_bytes(b"".join(len(p).to_bytes(8, "little") + p for p in scan_payloads))
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--ceiling-server", str(port), str(path)])
    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            write_call = channel.stream_unary(CEILING_SERVICE + "Write")
            scan_call = channel.unary_stream(CEILING_SERVICE + "Scan")

            def scan() -> None:
                tables = [ipc_to_table(p) for p in scan_call(b"")]
                table_to_pandas(pa.concat_tables(tables))

            writes = [timed(lambda: write_call(iter(write_payloads))) for _ in range(repeat)]
            scans = [timed(scan) for _ in range(repeat)]
    finally:
        server.terminate()
        server.wait()
    return writes, scans


# -- the db-api ----------------------------------------------------------------------------------


def start_db_api(data_dir: Path) -> tuple[subprocess.Popen, DbApiClient]:
    port = free_port()
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_DB_API_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_lib.cli", "db-api", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    client = DbApiClient(f"127.0.0.1:{port}", TOKEN, timeout=60, max_message_bytes=256 << 20)
    for _ in range(300):
        try:
            client.health()
            return process, client
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("the db-api did not start")


def partitioned_scan(address: str, readers: int) -> int:
    rows = [0] * readers

    def read(i: int) -> None:
        with DbApiClient(address, TOKEN, max_message_bytes=256 << 20) as client:
            frame = client.scan_pandas("raw", partition=i, partitions=readers, batch_size=SCAN_BATCH)
            rows[i] = len(frame)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(rows)


def commit_clean_all(client: DbApiClient, table: pa.Table) -> None:
    for offset in range(0, table.num_rows, COMMIT_BATCH):
        chunk = table.slice(offset, COMMIT_BATCH)
        ids = chunk.column("submission_id").to_pylist()
        client.commit_clean(chunk, None, ids)


def db_api_run(data_dir: Path, raw: pa.Table, typed: pa.Table) -> dict[str, float]:
    """One pass through a fresh `workbench db-api` process; seconds per operation."""
    n = raw.num_rows
    process, client = start_db_api(data_dir)
    try:
        seconds = {
            "write": timed(lambda: client.write("raw", raw, key="submission_id", batch_size=WRITE_BATCH)),
        }
        assert client.count("raw") == n
        seconds["scan"] = timed(lambda: client.scan_pandas("raw", batch_size=SCAN_BATCH))
        seconds["pscan"] = timed(lambda: partitioned_scan(client.address, 2))
        seconds["commit"] = timed(lambda: commit_clean_all(client, typed))
        assert client.count("raw") == 0 and client.count("cleaned") == n
        seconds["typed_scan"] = timed(lambda: client.scan_pandas("cleaned", batch_size=SCAN_BATCH))
        return seconds
    finally:
        client.close()
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ceiling-server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server:
        serve_transport_ceiling(int(args.ceiling_server[0]), args.ceiling_server[1])
        return

    n, repeat = args.records, args.repeat
    print(f"db-api benchmark: {n:,} records x 15 fields, median of {repeat} runs, {os.cpu_count()} cores")
    print("raw holds text as submitted; CommitClean writes the typed records; batches of", WRITE_BATCH)
    table = student_records(n)
    raw = as_submitted(table)
    docs = [{"_id": d["submission_id"], **d} for d in raw.to_pylist()]
    results: dict[str, list[float]] = {k: [] for k in ("write", "scan", "pscan", "commit", "typed_scan")}
    ceilings: dict[str, list[float]] = {k: [] for k in ("store_write", "store_scan", "store_commit")}

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        workdir = Path(tmp)
        for run in range(repeat):
            path = workdir / f"ceiling{run}.sqlite3"
            ceilings["store_write"].append(store_ceiling_write(docs, path))
            ceilings["store_scan"].append(store_ceiling_scan(path))
            ceilings["store_commit"].append(store_ceiling_commit(docs, path))
            path.unlink()

            for name, seconds in db_api_run(workdir / f"run{run}", raw, table).items():
                results[name].append(seconds)
        transport_write, transport_scan = transport_ceiling(raw, workdir, repeat)

    def rate(seconds: list[float]) -> float:
        return n / statistics.median(seconds)

    write_limits = [("store", ceilings["store_write"]), ("transport", transport_write)]
    scan_limits = [("store", ceilings["store_scan"]), ("transport", transport_scan)]
    rows = [
        ("bulk write (WriteBatches)", results["write"], write_limits),
        ("full scan to pandas", results["scan"], scan_limits),
        ("partitioned scan, 2 readers", results["pscan"], scan_limits),
        ("CommitClean (upsert + delete raw)", results["commit"], [("store", ceilings["store_commit"])]),
        ("typed scan of cleaned to pandas", results["typed_scan"], [("store", ceilings["store_scan"])]),
    ]
    header = f"{'operation':36} {'records/s':>10} {'seconds':>8}"
    print(f"\n{header}   ceilings (records/s) and share of the lower")
    for name, timings, limits in rows:
        ceiling_text = ", ".join(f"{label} {rate(s):,.0f}" for label, s in limits)
        lowest = min(rate(s) for _, s in limits)
        print(
            f"{name:36} {rate(timings):>10,.0f} {statistics.median(timings):>8.2f}   "
            f"{ceiling_text}; {rate(timings) / lowest:.0%} of {lowest:,.0f}"
        )
    print("\nruns (seconds):", {k: [round(s, 2) for s in v] for k, v in results.items()})
    print("ceiling runs (seconds):", {k: [round(s, 2) for s in v] for k, v in ceilings.items()})
    print("transport runs (seconds):", {"write": [round(s, 2) for s in transport_write],
                                        "scan": [round(s, 2) for s in transport_scan]})  # fmt: skip


if __name__ == "__main__":
    main()
