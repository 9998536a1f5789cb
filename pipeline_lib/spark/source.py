"""`workbench`: a Spark Python Data Source over the db-api.

    spark.read.format("workbench").option("collection", "raw").load()
    (df.write.format("workbench").option("collection", "cleaned").option("key", "submission_id")
        .mode("append").save())

Reading makes one Spark partition per db-api partition (`Scan`, partition i of n) and yields
Arrow record batches cast to the Spark schema, so no row ever becomes a Python object. The clean
and process jobs read with `read`: the same scans, run by `mapInArrow` rather than as a data source. Writing
streams each Spark partition's Arrow batches to `WriteBatches`; each batch commits atomically on
its own, and a keyed upsert makes rerunning a failed write safe.

Options (names are case-insensitive):
- `collection` (required): one of the db-api's collections; `.load(NAME)` / `.save(NAME)` also work.
- `address`, `token`, `max_message_mb`: the db-api; `register` sets them from the driver's
  settings (`WORKBENCH_DB_API_ADDRESS`, the token setting or file) and they travel to executors
  with the reader or writer: an executor never reads settings, files or its working folder.
- `tls_ca`, `tls_client_cert`, `tls_client_key`: PEM text (not paths) for a db-api that serves
  TLS; `register` reads them on the driver from `WORKBENCH_DB_API_TLS_CA` (TLS on when set) and
  `WORKBENCH_DB_API_TLS_CLIENT_CERT` / `_KEY`, so no executor needs the files. They travel in the
  registered class, not in the query plan (a few KB: keep the CA file to the db-api's CA).
- `partitions`: db-api partitions to read, one Spark partition each; default the session's
  default parallelism (else 2).
- `batch_size`: rows per message (reads: 20,000; writes: 10,000). Spark's per-batch costs (its
  Python worker, the hand-over to the JVM) make reads of the service default (2,000) about a third slower.
- `columns`: comma-separated fields to read; `column_types`: default, as_stored or text.
- `sample_size`: documents scanned to infer a schema (default 1,000) when none is given with
  `.schema(...)`. `raw` reads as text; other collections get the types found in the sample, so
  give a schema when later documents may differ.
- Writes: `key` (the field that identifies a record; it becomes `_id`) and `mode` (`upsert`,
  the default when a key is given, else `insert`). Only `.mode("append")` is supported.

Executors import this module, the db-api client and its generated gRPC code by name: install the
package in the Python environment the workers run (`PYSPARK_PYTHON`; `get_spark` sets it to the
current interpreter). Only the small configured subclass made by `register` travels by value.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Unpack, cast

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DecimalType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipeline_lib.client.core import MIB, Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.client.tls import ClientTls
from pipeline_lib.contract.collections import COLLECTIONS
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.wire.requests import DEFAULT_WRITE_BATCH, ColumnTypes, ScanOptions, batches_to_table

NAME = "workbench"
DEFAULT_SAMPLE_SIZE = 1000
# Rows per scan reply for Spark reads. Reading 1,000,000 raw records into Spark (2 cores, the run
# of median CPU time of 3) took 8.0 s at 2,000 rows, 6.9 s at 10,000, 5.9 s at 20,000, 6.8 s at 50,000.
DEFAULT_READ_BATCH = 20_000
# The db-api's own default (WORKBENCH_DB_API_MAX_MESSAGE_MB), read from where it is declared.
DEFAULT_MAX_MESSAGE_MB: int = Settings.model_fields["db_api_max_message_mb"].default
COLUMN_TYPES = ("default", "as_stored", "text")
WRITE_MODES = ("insert", "upsert")
_OPTIONS = frozenset(
    {
        "collection",
        "address",
        "token",
        "partitions",
        "batch_size",
        "columns",
        "column_types",
        "sample_size",
        "max_message_mb",
        "key",
        "mode",
        "path",  # .load(NAME) / .save(NAME): the collection
        "tls_ca",
        "tls_client_cert",
        "tls_client_key",
    }
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOptions:
    """The parsed, checked options of one read or write; picklable, so it travels to executors."""

    collection: str
    endpoint: Endpoint  # the db-api: address, token, message size, TLS
    partitions: int
    batch_size: int
    columns: tuple[str, ...]
    column_types: ColumnTypes
    sample_size: int
    key: str | None
    mode: str

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SourceOptions:
        # Names starting "__" are Spark's own.
        options = {name.lower(): value for name, value in options.items() if not name.startswith("__")}
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for the {NAME} data source; known: {sorted(_OPTIONS)}"
            )
        collection = (options.get("collection") or options.get("path") or "").strip()
        if not collection:
            raise ValueError(
                f'the {NAME} data source needs .option("collection", NAME); '
                f"the db-api serves: {', '.join(sorted(COLLECTIONS))}"
            )
        if collection not in COLLECTIONS:
            raise ValueError(
                f"unknown collection {collection!r}; the db-api serves: {', '.join(sorted(COLLECTIONS))}"
            )
        column_types = options.get("column_types", "default").strip().lower()
        if column_types not in COLUMN_TYPES:
            raise ValueError(f"column_types must be one of {', '.join(COLUMN_TYPES)}, got {column_types!r}")
        key = options.get("key", "").strip() or None
        mode = options.get("mode", "upsert" if key else "insert").strip().lower()
        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {', '.join(WRITE_MODES)}, got {mode!r}")
        if mode == "upsert" and key is None:
            raise ValueError('mode "upsert" needs .option("key", FIELD), the field that identifies a record')
        return cls(
            collection=collection,
            endpoint=_endpoint(options),
            partitions=_integer(options, "partitions", 1) if "partitions" in options else 2,
            batch_size=_integer(options, "batch_size", 0) if "batch_size" in options else 0,
            columns=tuple(c.strip() for c in options.get("columns", "").split(",") if c.strip()),
            column_types=cast(ColumnTypes, column_types),
            sample_size=(
                _integer(options, "sample_size", 1) if "sample_size" in options else DEFAULT_SAMPLE_SIZE
            ),
            key=key,
            mode=mode,
        )

    @property
    def address(self) -> str:
        return self.endpoint.address

    @property
    def token(self) -> str | None:
        return self.endpoint.token

    def client(self) -> DbApiClient:
        return DbApiClient.for_endpoint(self.endpoint)

    @property
    def read_batch_size(self) -> int:
        """Rows per scan reply: the `batch_size` option, else `DEFAULT_READ_BATCH`."""
        return self.batch_size or DEFAULT_READ_BATCH

    def scan(self, **options: Unpack[ScanOptions]) -> Iterator[pa.RecordBatch]:
        """The collection's batches, in these options' column types and batch size, over a client
        that lives as long as the scan."""
        defaults = ScanOptions(column_types=self.column_types, batch_size=self.read_batch_size)
        with self.client() as client:
            yield from client.scan_batches(self.collection, **(defaults | options))


def db_api_options(endpoint: Endpoint) -> dict[str, str]:
    """The options that name the db-api and how to reach it (read back by `SourceOptions.parse`):
    address, token, max_message_mb and the TLS PEM text."""
    options = {"address": endpoint.address, "max_message_mb": str(max(1, endpoint.max_message_bytes // MIB))}
    if endpoint.token:
        options["token"] = endpoint.token
    return options | _pem_options(endpoint.tls)


def job_options(endpoint: Endpoint, collection: str, partitions: int) -> SourceOptions:
    """What a job's `read` scans `collection` with: its client's endpoint, TLS PEM included, and
    `partitions` partitions (at least one)."""
    return SourceOptions.parse(
        db_api_options(endpoint) | {"collection": collection, "partitions": str(max(1, partitions))}
    )


def is_connect(spark: SparkSession) -> bool:
    """Whether `spark` is a Spark Connect client's session (a server runs its driver)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_partitions(spark: SparkSession) -> int:
    """Spark's default parallelism. A Spark Connect client has no SparkContext to ask: there it is
    the server's `spark.default.parallelism` (the warm Spark sets it), else this machine's cores."""
    if is_connect(spark):
        value = spark.conf.get("spark.default.parallelism", None)
        return int(value) if value else (os.cpu_count() or 1)
    return spark.sparkContext.defaultParallelism


def read(
    spark: SparkSession,
    client: DbApiClient,
    collection: str,
    schema: StructType | None = None,
    *,
    partitions: int | None = None,
) -> DataFrame:
    """`collection` as a DataFrame read through `client`'s db-api in `partitions` partitions (Spark's
    default parallelism when not given); without `schema`, one is inferred from a sample here.

    The jobs' reads: the same scans as the `workbench` format's reader, one task per db-api
    partition, run by `mapInArrow` over `spark.range(partitions)`. A data source is created and
    planned in Python workers of two more kinds, each a daemon of its own to start on a run's first
    read; this way starts none (1,000,000 raw records on `local[2]`, a fresh Spark: a first small
    read 2.5-3.3 s against 5.3-5.6 s, then the million 5.0-5.5 s against 6.1-6.4 s). The endpoint,
    TLS PEM included, travels in the pickled function."""
    options = job_options(client.endpoint, collection, partitions or default_partitions(spark))
    if schema is None:
        schema = sample_schema(options)
    return _read(spark, options, schema, None, schema)


BatchMap = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def read_through(
    spark: SparkSession,
    client: DbApiClient,
    collection: str,
    scanned: StructType,
    through: BatchMap,
    schema: StructType,
    *,
    partitions: int | None = None,
) -> DataFrame:
    """`read` of `collection`'s `scanned` fields, each task's Arrow batches passed through
    `through` on the executor, as they arrive: `schema` is what it yields. `through` travels
    pickled (a module's function travels by name) and is called once per task."""
    options = job_options(client.endpoint, collection, partitions or default_partitions(spark))
    return _read(spark, options, scanned, through, schema)


def _read(
    spark: SparkSession,
    options: SourceOptions,
    scanned: StructType,
    through: BatchMap | None,
    schema: StructType,
) -> DataFrame:
    count = options.partitions
    arrow_schema = reader_arrow_schema(scanned)
    scan = functools.partial(_scan_ranges, options=options, schema=arrow_schema, through=through)
    return spark.range(0, count, 1, count).mapInArrow(scan, schema)


def _scan_ranges(
    ranges: Iterator[pa.RecordBatch], options: SourceOptions, schema: pa.Schema, through: BatchMap | None
) -> Iterator[pa.RecordBatch]:
    """On an executor: the db-api partitions whose numbers `spark.range` gave this task."""
    batches = (
        batch
        for numbers in ranges
        for index in numbers.column(0).to_pylist()
        for batch in scan_partition(options, index, options.partitions, schema)
    )
    yield from batches if through is None else through(batches)


def scan_partition(
    options: SourceOptions, index: int, count: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Partition `index` of `count` of the options' collection, in exactly `schema`."""
    batches = options.scan(partition=index, partitions=count, columns=schema.names, schema=schema)
    for batch in batches:
        yield conform(batch, schema)


def sample_schema(options: SourceOptions) -> StructType:
    """The Spark schema of the first `sample_size` documents of the options' collection."""
    batch_size = min(options.read_batch_size, options.sample_size)  # no page beyond the sample
    sample = batches_to_table(
        list(options.scan(columns=options.columns, limit=options.sample_size, batch_size=batch_size)), None
    )
    return spark_schema(sample.schema)


def _endpoint(options: Mapping[str, str]) -> Endpoint:
    # Everything about the db-api comes in the options, set on the driver by `register`: an
    # executor (another machine, another working folder) never reads settings of its own.
    address = options.get("address", "").strip()
    if not address:
        raise ValueError(
            f"the {NAME} data source has no db-api address: register it with "
            "pipeline_lib.spark.source.register(spark) (get_spark does) "
            "or give .option('address', HOST:PORT)"
        )
    max_message_mb = (
        _integer(options, "max_message_mb", 1) if "max_message_mb" in options else DEFAULT_MAX_MESSAGE_MB
    )
    return Endpoint(address, options.get("token") or None, max_message_mb * MIB, _tls(options))


def _tls(options: Mapping[str, str]) -> ClientTls | None:
    ca, cert, key = (options.get(name) or "" for name in ("tls_ca", "tls_client_cert", "tls_client_key"))
    if not ca:
        if cert or key:
            raise ValueError("options tls_client_cert and tls_client_key need tls_ca: TLS is on with it only")
        return None
    if bool(cert) != bool(key):
        raise ValueError("options tls_client_cert and tls_client_key go together")
    return ClientTls(ca.encode(), cert.encode() or None, key.encode() or None)


def tls_options(settings: Settings) -> dict[str, str]:
    """The TLS options executors need, as PEM text read here from the settings' files (none
    without WORKBENCH_DB_API_TLS_CA)."""
    return _pem_options(ClientTls.from_settings(settings))


def _pem_options(tls: ClientTls | None) -> dict[str, str]:
    if tls is None:
        return {}
    options = {"tls_ca": tls.ca.decode()}
    if tls.client_cert is not None and tls.client_key is not None:
        options |= {"tls_client_cert": tls.client_cert.decode(), "tls_client_key": tls.client_key.decode()}
    return options


def _integer(options: Mapping[str, str], name: str, minimum: int) -> int:
    text = options[name]
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"option {name} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"option {name} must be at least {minimum}, got {value}")
    return value


# -- schemas ---------------------------------------------------------------------------------


def spark_type(arrow_type: pa.DataType) -> DataType:
    """The Spark type a scanned Arrow column reads as (for schema inference)."""
    if pa.types.is_null(arrow_type):
        return StringType()  # no value in the sample: text holds whatever comes
    if pa.types.is_timestamp(arrow_type):
        return TimestampType()  # the db-api's dates are UTC instants
    if pa.types.is_dictionary(arrow_type):
        return spark_type(arrow_type.value_type)
    if pa.types.is_decimal(arrow_type):
        if arrow_type.precision > 38:
            return StringType()
        return DecimalType(arrow_type.precision, arrow_type.scale)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return ArrayType(spark_type(arrow_type.value_type), containsNull=True)
    if pa.types.is_struct(arrow_type):
        return StructType([StructField(f.name, spark_type(f.type), nullable=True) for f in arrow_type])
    return from_arrow_type(arrow_type)


def spark_schema(arrow_schema: pa.Schema) -> StructType:
    return StructType([StructField(f.name, spark_type(f.type), nullable=True) for f in arrow_schema])


def reader_arrow_schema(schema: StructType) -> pa.Schema:
    """Exactly the Arrow schema Spark checks a reader's batches against (timestamps are
    `timestamp[us, tz=UTC]`)."""
    return to_arrow_schema(schema, timezone="UTC")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with exactly `schema` (the db-api casts to it already: this is cheap then)."""
    if batch.schema.equals(schema):
        return batch
    if batch.schema.names != schema.names:
        batch = batch.select(schema.names)
    return batch.cast(schema)


def _utc_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return pa.timestamp(arrow_type.unit, tz="UTC")
    if pa.types.is_struct(arrow_type):
        return pa.struct([f.with_type(_utc_type(f.type)) for f in arrow_type])
    if pa.types.is_list(arrow_type):
        return pa.list_(arrow_type.value_field.with_type(_utc_type(arrow_type.value_type)))
    if pa.types.is_large_list(arrow_type):
        return pa.large_list(arrow_type.value_field.with_type(_utc_type(arrow_type.value_type)))
    return arrow_type


def utc_timestamps(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Spark's writer labels timestamps `Etc/UTC`; relabel them `UTC` (same instants)."""
    schema = pa.schema([f.with_type(_utc_type(f.type)) for f in batch.schema], metadata=batch.schema.metadata)
    return batch if schema.equals(batch.schema) else batch.cast(schema)


# -- the data source ---------------------------------------------------------------------------


class WorkbenchDataSource(DataSource):
    """Reads and writes db-api collections; see the module docstring for the options."""

    # Option defaults resolved on the driver by `register` (address, token, partitions).
    defaults: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def name(cls) -> str:
        return NAME

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(options)  # type: ignore[arg-type]
        self.config = SourceOptions.parse({**self.defaults, **dict(options)})

    def schema(self) -> StructType:
        return sample_schema(self.config)

    def reader(self, schema: StructType) -> WorkbenchReader:
        return WorkbenchReader(self.config, schema)

    def writer(self, schema: StructType, overwrite: bool) -> WorkbenchWriter:
        if overwrite:
            raise ValueError(
                f"the {NAME} data source cannot overwrite a collection; use .mode('append') "
                "with .option('key', FIELD): a keyed upsert replaces records with the same key"
            )
        return WorkbenchWriter(self.config)


class ScanPartition(InputPartition):
    """Partition `index` of `count` of a db-api scan."""

    def __init__(self, index: int, count: int) -> None:
        super().__init__(index)
        self.index = index
        self.count = count

    def __repr__(self) -> str:
        return f"ScanPartition({self.index} of {self.count})"


class WorkbenchReader(DataSourceReader):
    def __init__(self, config: SourceOptions, schema: StructType) -> None:
        self.config = config
        self.arrow_schema = reader_arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        count = self.config.partitions
        return [ScanPartition(index, count) for index in range(count)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:  # type: ignore[override]
        assert isinstance(partition, ScanPartition)
        yield from scan_partition(self.config, partition.index, partition.count, self.arrow_schema)


@dataclass(frozen=True)
class WriteCommit(WriterCommitMessage):
    """What one Spark partition wrote."""

    partition: int
    rows: int
    messages: int
    inserted: int
    replaced: int
    skipped: int


class WorkbenchWriter(DataSourceArrowWriter):
    def __init__(self, config: SourceOptions) -> None:
        self.config = config

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriteCommit:  # type: ignore[override]
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else -1
        batches = (utc_timestamps(batch) for batch in iterator if batch.num_rows)
        first = next(batches, None)
        if first is None:
            return WriteCommit(partition, 0, 0, 0, 0, 0)  # nothing to send: no call at all
        rows = 0

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            for batch in itertools.chain([first], batches):
                rows += batch.num_rows
                yield batch

        c = self.config
        with c.client() as client:
            result = client.write(
                c.collection,
                counted(),
                mode=c.mode,
                key=c.key,
                batch_size=c.batch_size or DEFAULT_WRITE_BATCH,
            )
        return WriteCommit(partition, rows, result.messages, result.inserted, result.replaced, result.skipped)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:  # type: ignore[override]
        totals = _totals(messages)
        log.info("wrote %s to %s", totals, self.config.collection)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:  # type: ignore[override]
        totals = _totals(messages)
        log.warning(
            "a write to %s failed; the partitions that finished wrote %s and stay written%s",
            self.config.collection,
            totals,
            " (a keyed upsert: rerun the write)" if self.config.mode == "upsert" else "",
        )


def _totals(messages: list[Any]) -> dict[str, int]:
    done = [m for m in messages if isinstance(m, WriteCommit)]
    return {
        "partitions": len(done),
        "rows": sum(m.rows for m in done),
        "inserted": sum(m.inserted for m in done),
        "replaced": sum(m.replaced for m in done),
        "skipped": sum(m.skipped for m in done),
    }


def register(
    spark: SparkSession, settings: Settings | None = None, *, partitions: int | None = None
) -> type[WorkbenchDataSource]:
    """Register the `workbench` format on `spark`, with option defaults resolved here, on the
    driver: the db-api address, token and TLS PEM from `settings`, and `partitions` for reads.

    The defaults live in a subclass made here, which Spark pickles by value (its base class and
    everything else are imported by name on the workers). Registering again replaces it.
    """
    defaults = db_api_options(Endpoint.from_settings(settings or get_settings()))
    if partitions:
        defaults["partitions"] = str(max(1, partitions))
    registered = _registered.get(spark)
    if registered is not None and registered.defaults == defaults:
        return registered  # already there: Spark would warn about replacing it
    source = type(
        "ConfiguredWorkbenchDataSource",
        (WorkbenchDataSource,),
        {"defaults": defaults, "__module__": __name__, "__qualname__": "ConfiguredWorkbenchDataSource"},
    )
    spark.dataSource.register(source)
    _registered[spark] = source
    return source


# The class last registered on each session, so that an unchanged one is not replaced.
_registered: weakref.WeakKeyDictionary[SparkSession, type[WorkbenchDataSource]] = weakref.WeakKeyDictionary()
