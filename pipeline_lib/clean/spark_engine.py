"""The cleaning rules as Spark column expressions: the same programs as `pandas_engine`.

Everything that runs per record is a column expression, a window or a broadcast look-up, so
Spark runs it in parallel over partitions; no Python runs per record. A field's few distinct
values are cleaned once, on the driver, by `pandas_engine` itself.

`clean` serves any DataFrame (an analyst's). The clean job cleans and checks in its scan workers
instead (`by_value`, `checked_read`) and takes only `mark_duplicates` from here.
"""

from __future__ import annotations

import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline_lib.clean import by_value, pandas_engine, rules
from pipeline_lib.clean.rules import Case, FieldRule, Lookup, Replace, Step, Translate, Trim


def _whole(text: Column, pattern: str) -> Column:
    r"""Whether all of `text` matches `pattern`, as Python's fullmatch (pandas_engine) says: `rlike`
    finds, and Java's `$` also matches before a final line break ("F\n" would pass), so the
    end is anchored with `\z`."""
    return text.rlike(f"^(?:{pattern})\\z")


def _apply(step: Step, text: Column) -> Column:
    if isinstance(step, Replace):
        replaced = F.regexp_replace(text, step.pattern, step.replacement)
        if step.when is None:
            return replaced
        return F.when(_whole(text, step.when), replaced).otherwise(text)
    if isinstance(step, Translate):
        # Characters of the source beyond the target's length are deleted.
        return F.translate(text, step.source + step.delete, step.target)
    if isinstance(step, Trim):
        return F.trim(text)
    if isinstance(step, Case):
        return F.upper(text) if step.upper else F.lower(text)
    if isinstance(step, Lookup):
        mapping = F.create_map(*[F.lit(x) for pair in step.mapping.items() for x in pair])
        return F.coalesce(F.try_element_at(mapping, text), text)
    raise TypeError(f"unknown step {step!r}")


def _typed(rule: FieldRule, text: Column) -> tuple[Column, Column]:
    f = rule.field
    missing = text.isNull() | (text == "")
    missing_code = F.lit(f"{f.name}_missing") if f.required else F.lit(None).cast("string")
    if f.kind == "text":
        return F.when(~missing, text), F.when(missing, missing_code)
    if f.kind in ("choice", "bool"):
        valid = text.isin(list(f.choices) if f.kind == "choice" else ["true", "false"])
        value = F.when(valid, text) if f.kind == "choice" else F.when(valid, text == "true")
        return value, F.when(missing, missing_code).when(~valid, F.lit(f"{f.name}_invalid"))
    number = F.when(_whole(text, rules.NUMBER), text.try_cast("double"))
    finite = number.isNotNull() & ~F.isnan(number) & (F.abs(number) != float("inf"))
    whole = finite & (number == F.floor(number)) if f.kind == "int" else finite
    inside = whole & (number >= f.minimum) & (number <= f.maximum)
    code = F.when(missing, missing_code).when(~finite, F.lit(f"{f.name}_invalid"))
    if f.kind == "int":
        code = code.when(~whole, F.lit(f"{f.name}_not_whole"))
    code = code.when(~inside, F.lit(f"{f.name}_out_of_range"))
    return F.when(inside, number), code


def _canonical(rule: FieldRule, text: Column) -> Column:
    canonical = _whole(text, rule.canonical) & ~text.isin(list(rule.lookup_keys))
    return F.coalesce(canonical, F.lit(False))


def _step_or_keep(name: str, step: Step) -> Column:
    text = F.col(f"{name}__text")
    return F.when(F.col(f"{name}__canon"), text).otherwise(_apply(step, text))


def _mark_change(name: str, k: int) -> Column:
    changed = F.col(f"{name}__next") != F.col(f"{name}__text")
    return F.col(f"{name}__mask").bitwiseOR(F.when(changed, F.lit(1 << k)).otherwise(F.lit(0)))


def _run_programs(df: DataFrame, field_rules: list[FieldRule], carried: list[str]) -> DataFrame:
    """`carried` plus, per rule, `<name>`, `<name>__reason`, `<name>__rules`, `<name>__raw` and
    `<name>__text`, from the text in `<name>__raw`.

    Each step is its own projection (step k of every field reads what step k-1 wrote), so
    expressions stay small: nesting all steps in one expression per field makes Spark's planner
    and code generator slow down sharply. Projections carry the current text and a bitmask of
    the steps that changed it, not every intermediate value."""
    names = [r.name for r in field_rules]
    fixed = [*carried, *[f"{n}__{part}" for n in names for part in ("raw", "canon")]]
    df = df.select(
        *carried,
        *[F.col(f"{n}__raw") for n in names],
        *[_canonical(r, F.col(f"{r.name}__raw")).alias(f"{r.name}__canon") for r in field_rules],
        *[F.col(f"{n}__raw").alias(f"{n}__text") for n in names],
        *[F.lit(0).alias(f"{n}__mask") for n in names],
    )
    for k in range(max((len(r.steps) for r in field_rules), default=0)):
        stepping = {r.name: r.steps[k] for r in field_rules if k < len(r.steps)}
        resting = [F.col(f"{n}__{p}") for n in names if n not in stepping for p in ("text", "mask")]
        # Values already in final form skip every step (CASE WHEN evaluates only the branch taken).
        df = df.select(
            *fixed,
            *[F.col(f"{n}__{p}") for n in names for p in ("text", "mask")],
            *[_step_or_keep(n, step).alias(f"{n}__next") for n, step in stepping.items()],
        )
        # Step k changed a value when its output differs from its input: set bit k.
        df = df.select(
            *fixed,
            *resting,
            *[F.col(f"{n}__next").alias(f"{n}__text") for n in stepping],
            *[_mark_change(n, k).alias(f"{n}__mask") for n in stepping],
        )
    columns = []
    for rule in field_rules:
        n = rule.name
        text, mask = F.col(f"{n}__text"), F.col(f"{n}__mask")
        value, code = _typed(rule, text)
        applied = [F.when(mask.bitwiseAND(1 << k) != 0, F.lit(s.name)) for k, s in enumerate(rule.steps)]
        rules_applied = F.when(mask == 0, F.array().cast("array<string>")).otherwise(
            F.array_compact(F.array(*applied))
        )
        columns += [value.alias(n), code.alias(f"{n}__reason"), rules_applied.alias(f"{n}__rules")]
        columns += [F.col(f"{n}__raw"), text.alias(f"{n}__text")]
    return df.select(*carried, *columns)


# A field with at most this many distinct raw values is cleaned once per value and joined back
# (a broadcast look-up per record); one with more runs the steps on every record.
DICTIONARY_MAX_VALUES = 50_000


def _value_tables(source: DataFrame, field_rules: list[FieldRule]) -> dict[str, DataFrame]:
    """Per rule, its outputs for each distinct value of `<name>__raw` in `source`, keyed by
    `__value`; rules whose field has more than `DICTIONARY_MAX_VALUES` values are left out.

    Spark finds the distinct values; the driver cleans them with `pandas_engine` (the same rules,
    proven equal by the engine tests) and hands each table back as a small local relation. Running
    the steps as Spark plans instead cost ~7 s at any size (1M records: planning eleven plans of a
    dozen projections each, then compiling and running them as eleven jobs), for a few hundred values.
    The driver holds at most `DICTIONARY_MAX_VALUES` values per field, however large the input."""
    if not field_rules:
        return {}
    # One pass finds every field's distinct values: a grouping set per field, one Expand and one
    # aggregation (1M raw records: 2.8 s cold, 1.1 s warm, against 3.3 and 2.0-2.7 s for exploding
    # (field, value) pairs and taking the distinct ones), materialised.
    # grouping_id() tells the sets apart: the bit of each column left out of the set is 1.
    columns = [f"{r.name}__raw" for r in field_rules]
    every = (1 << len(columns)) - 1
    set_of = {r.name: every ^ (1 << (len(columns) - 1 - i)) for i, r in enumerate(field_rules)}
    values = (
        source.groupingSets([[c] for c in columns], *columns)
        .agg(F.grouping_id().alias("__set"))
        .localCheckpoint(eager=True)
    )
    counts = dict(values.groupBy("__set").count().collect())
    small = [r for r in field_rules if counts.get(set_of[r.name], 0) <= DICTIONARY_MAX_VALUES]
    if not small:
        return {}
    found = values.where(F.col("__set").isin([set_of[r.name] for r in small])).toArrow()
    spark = source.sparkSession
    tables = {}
    for rule in small:
        mine = found.filter(pc.equal(found["__set"], set_of[rule.name]))[f"{rule.name}__raw"]
        cleaned = pandas_engine.clean_field(rule, mine.to_pandas())
        tables[rule.name] = spark.createDataFrame(by_value.value_table(rule, cleaned))
    return tables


def _look_up(df: DataFrame, rule: FieldRule, table: DataFrame) -> DataFrame:
    joined = df.join(F.broadcast(table), df[f"{rule.name}__raw"].eqNullSafe(table["__value"]), "left")
    return joined.drop("__value")


def clean_fields(raw: DataFrame) -> DataFrame:
    """Adds per field `<name>`, `<name>__reason`, `<name>__rules`, `<name>__raw`, `<name>__text`.

    Survey answers repeat: a few hundred spellings of yes, no, a school code or a score cover a
    million submissions. So each field is cleaned once per distinct value (on the driver, by
    `pandas_engine`) and looked up, unless it has more than `DICTIONARY_MAX_VALUES` values (unique
    references, say): then Spark runs the steps on every record. Both run the same programs."""
    meta = [F.col(m) if m in raw.columns else F.lit(None).cast("string").alias(m) for m in rules.META]
    # As text, like raw's scans: an analyst's frame may hold numbers or booleans, which both paths
    # (the driver's pandas look-up and Spark's steps) then read the same way.
    sources = {n: (F.col(n) if n in raw.columns else F.lit(None)).cast("string") for n in rules.FIELD_NAMES}
    df = raw.select(*meta, *[sources[n].alias(f"{n}__raw") for n in rules.FIELD_NAMES])
    tables = _value_tables(df, list(rules.STUDENT_RULES))
    looked_up = [r for r in rules.STUDENT_RULES if r.name in tables]
    per_record = [r for r in rules.STUDENT_RULES if r not in looked_up]
    df = _run_programs(df, per_record, carried=[*rules.META, *[f"{r.name}__raw" for r in looked_up]])
    for rule in looked_up:
        df = _look_up(df, rule, tables[rule.name])
    columns = [
        f"{n}{part}" for n in rules.FIELD_NAMES for part in ("", "__reason", "__rules", "__raw", "__text")
    ]
    return df.select(*rules.META, *columns)


def _message(code: Column, raw: Column, codes: list[str]) -> Column:
    quoted = F.when(raw.isNull(), F.lit("nothing")).otherwise(F.concat(F.lit("'"), raw, F.lit("'")))
    expr = None
    for c in codes:
        before, has_value, after = rules.REASONS[c].partition("{value}")
        piece = F.concat(F.lit(before), quoted, F.lit(after)) if has_value else F.lit(before)
        expr = F.when(code == c, piece) if expr is None else expr.when(code == c, piece)
    return expr


def _reason(code: Column, field: str, codes: list[str]) -> Column:
    """A reason struct when `code` is set: code, field and a message quoting the raw value."""
    message = _message(code, F.col(f"{field}__raw"), codes)
    reason = F.struct(code.alias("code"), F.lit(field).alias("field"), message.alias("message"))
    return F.when(code.isNotNull(), reason)


def _change(name: str) -> Column:
    change = F.struct(
        F.lit(name).alias("field"),
        F.col(f"{name}__raw").alias("before"),
        F.col(f"{name}__text").alias("after"),
        F.col(f"{name}__rules").alias("rules"),
    )
    return F.when(F.size(F.col(f"{name}__rules")) > 0, change)


def clean(raw: DataFrame, schools: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(cleaned, quarantine, without_consent) DataFrames; records without consent are in neither
    of the first two, and the third holds their `submission_id`s. `schools` has one column
    `school_id` with the normalised codes of known schools."""
    return split(check(clean_fields(raw), schools))


def check(fields: DataFrame, schools: DataFrame) -> DataFrame:
    """One row per record of `fields` (`clean_fields`' columns): its values, consent, the changes
    the steps made and its reasons for quarantine (a field's, an unknown school), materialised
    once on the executors: the cleaned and quarantine halves (and their reports) are separate
    actions that would otherwise each compute every record again."""
    known = schools.select(F.col("school_id").alias("__known")).distinct()
    fields = fields.join(F.broadcast(known), fields["school_id"] == known["__known"], "left")
    reasons = [
        _reason(F.col(f"{r.name}__reason"), r.name, [c for c in rules.REASONS if c.startswith(f"{r.name}_")])
        for r in rules.STUDENT_RULES
    ]
    unknown = F.col("school_id").isNotNull() & F.col("__known").isNull()
    reasons.append(_reason(F.when(unknown, F.lit("school_unknown")), "school_id", ["school_unknown"]))
    consent = F.coalesce(F.col("consent"), F.lit(False))
    changes = F.array_compact(F.array(*[_change(n) for n in rules.VALUE_FIELDS]))
    return fields.select(
        *rules.META, *rules.VALUE_FIELDS, consent.alias("__consent"), changes.alias("changes"),
        *[F.col(f"{n}__raw") for n in rules.FIELD_NAMES], F.array_compact(F.array(*reasons)).alias("reasons"),
    ).localCheckpoint(eager=True)  # fmt: skip


def split(checked: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """`check`'s records as (cleaned, with its resubmissions marked; quarantine, with the
    resubmissions past `rules.MAX_DUPLICATES`; the ids of those without consent)."""
    consent = F.col("__consent")
    cleaned = checked.where(consent & (F.size("reasons") == 0)).select(
        *rules.META, *rules.VALUE_FIELDS, "changes"
    )
    raw_values = [*map(F.col, rules.META), *[F.col(f"{n}__raw").alias(n) for n in rules.FIELD_NAMES]]
    quarantine = checked.where(consent & (F.size("reasons") > 0)).select(*raw_values, "reasons")
    without_consent = checked.where(~consent).select("submission_id")
    marked = mark_duplicates(cleaned)
    surplus = marked.where(F.col(rules.SURPLUS)).select("submission_id")
    reason = rules.resubmitted_too_often()
    too_often = F.array(F.struct(*[F.lit(reason[k]).alias(k) for k in ("code", "field", "message")]))
    resubmitted = checked.join(surplus, "submission_id", "left_semi")
    resubmitted = resubmitted.select(*raw_values, too_often.alias("reasons"))
    kept = marked.where(~F.col(rules.SURPLUS)).drop(rules.SURPLUS)
    return kept, quarantine.unionByName(resubmitted), without_consent


def mark_duplicates(cleaned: DataFrame, max_duplicates: int | None = None) -> DataFrame:
    """As `pandas_engine.mark_duplicates`: exact resubmissions collapse to the first received,
    which lists the next `max_duplicates` (default `rules.MAX_DUPLICATES`) in `duplicates`, and a
    student with differing answers is flagged. The records past the bound come too, flagged in
    `rules.SURPLUS` (true) and identified by their `submission_id` only: their other columns are
    the first record's (their own raw values are not here; whoever quarantines them reads those).

    One aggregation per group of the same content, in one shuffle by student: the first record
    whole (`min_by`), and the group's ids sorted by arrival (received_at, nulls last, then
    submission_id), whose head is `duplicates` and whose rest is exploded into the flagged rows.
    A group of N holds its N ids once: a window's list over the whole group copied the list into
    each of its N records (150,000 resubmissions: 150,000 lists of 150,000 ids)."""
    bound = max(0, rules.MAX_DUPLICATES if max_duplicates is None else max_duplicates)
    identified = F.col("student_ref").isNotNull()
    content = F.sha2(F.to_json(F.struct(*rules.VALUE_FIELDS)), 256)
    # Records with the same content have the same school and student (both are in it), so one
    # shuffle by student serves the aggregation by content and the window by student.
    student = ["school_id", "student_ref"]
    rest = [c for c in cleaned.columns if c not in student]
    arrival = F.struct(
        F.col("received_at").isNull().alias("late"), F.col("received_at"), F.col("submission_id")
    )
    # Only records with a student number can be resubmissions: the others skip the shuffle.
    groups = (
        cleaned.where(identified)
        .repartition(*student)
        .groupBy(*student, content.alias("__content"))
        .agg(
            F.min_by(F.struct(*rest), arrival).alias("__first"),
            F.sort_array(F.collect_list(arrival)).getField("submission_id").alias("__ids"),
        )
    )
    ids, no_ids = F.col("__ids"), F.array().cast("array<string>")
    # One row for the group (a null id), one per id past the bound. The student columns stay the
    # grouping's own, so the window below needs no other shuffle.
    past = F.concat(F.array(F.lit(None).cast("string")), F.slice(ids, bound + 2, F.size(ids)))
    rows = groups.select(
        *student,
        "__first",
        F.slice(ids, 2, bound).alias("duplicates"),
        F.explode(past).alias("__past"),
    )
    surplus = F.col("__past").isNotNull()
    first = [F.col(f"__first.{c}").alias(c) for c in rest]
    first[rest.index("submission_id")] = F.coalesce("__past", "__first.submission_id").alias("submission_id")
    kept = ~F.col(rules.SURPLUS)
    per_student = Window.partitionBy(*student)
    marked = rows.select(
        *student,
        *first,
        F.when(surplus, no_ids).otherwise(F.col("duplicates")).alias("duplicates"),
        surplus.alias(rules.SURPLUS),
    ).withColumn("duplicate_conflict", kept & (F.count(F.when(kept, F.lit(1))).over(per_student) > 1))
    anonymous = cleaned.where(~identified).withColumns(
        {"duplicates": no_ids, "duplicate_conflict": F.lit(False), rules.SURPLUS: F.lit(False)}
    )
    columns = [*cleaned.columns, "duplicates", "duplicate_conflict", rules.SURPLUS]
    return marked.select(*columns).unionByName(anonymous.select(*columns))
