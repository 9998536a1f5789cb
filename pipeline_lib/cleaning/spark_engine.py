"""The cleaning rules as Spark column expressions: the same programs as `pandas_engine`.

Everything is a column expression or a window, so Spark runs it in parallel over partitions;
no Python runs per record.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline_lib.cleaning import rules
from pipeline_lib.cleaning.rules import Case, FieldRule, Lookup, Replace, ReplaceWhen, Step, Translate, Trim


def _apply(step: Step, text: Column) -> Column:
    if isinstance(step, Replace):
        return F.regexp_replace(text, step.pattern, step.replacement)
    if isinstance(step, ReplaceWhen):
        return F.when(
            text.rlike(f"^(?:{step.condition})$"), F.regexp_replace(text, step.pattern, step.replacement)
        ).otherwise(text)
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


def _canonical(rule: FieldRule) -> Column:
    text = F.col(f"{rule.name}__s0")
    canonical = text.rlike(f"^(?:{rule.canonical})$") & ~text.isin(list(rule.lookup_keys))
    return F.coalesce(canonical, F.lit(False))


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
    number = F.when(text.rlike(rules.NUMBER), text.try_cast("double"))
    finite = number.isNotNull() & ~F.isnan(number) & (F.abs(number) != float("inf"))
    whole = finite & (number == F.floor(number)) if f.kind == "int" else finite
    inside = whole & (number >= f.minimum) & (number <= f.maximum)
    code = F.when(missing, missing_code).when(~finite, F.lit(f"{f.name}_invalid"))
    if f.kind == "int":
        code = code.when(~whole, F.lit(f"{f.name}_not_whole"))
    code = code.when(~inside, F.lit(f"{f.name}_out_of_range"))
    return F.when(inside, number), code


def clean_fields(raw: DataFrame) -> DataFrame:
    """Adds per field `<name>`, `<name>__reason`, `<name>__rules`, `<name>__raw`, `<name>__text`.

    Each step is its own projection over columns (step k of every field reads the column step
    k-1 wrote), so expressions stay small: nesting all steps in one expression per field makes
    Spark's planner and code generator slow down sharply."""
    meta = [F.col(m) if m in raw.columns else F.lit(None).cast("string").alias(m) for m in rules.META]
    names = [rule.name for rule in rules.STUDENT_RULES]
    sources = [F.col(n) if n in raw.columns else F.lit(None).cast("string") for n in names]
    df = raw.select(*meta, *[s.alias(f"{n}__raw") for n, s in zip(names, sources, strict=True)],
                    *[s.alias(f"{n}__s0") for n, s in zip(names, sources, strict=True)])  # fmt: skip
    # Values already in final form skip every step (CASE WHEN evaluates only the branch taken).
    df = df.select("*", *[_canonical(rule).alias(f"{rule.name}__canon") for rule in rules.STUDENT_RULES])
    depth = max(len(rule.steps) for rule in rules.STUDENT_RULES)
    for k in range(depth):
        layer = [
            F.when(F.col(f"{rule.name}__canon"), F.col(f"{rule.name}__s{k}"))
            .otherwise(_apply(rule.steps[k], F.col(f"{rule.name}__s{k}")))
            .alias(f"{rule.name}__s{k + 1}")
            for rule in rules.STUDENT_RULES
            if k < len(rule.steps)
        ]
        df = df.select("*", *layer)
    columns = []
    for rule in rules.STUDENT_RULES:
        n, last = rule.name, len(rule.steps)
        text = F.col(f"{n}__s{last}")
        changed = [
            F.when(
                F.col(f"{n}__s{k}").isNotNull() & (F.col(f"{n}__s{k + 1}") != F.col(f"{n}__s{k}")),
                F.lit(step.name),
            )
            for k, step in enumerate(rule.steps)
        ]
        value, code = _typed(rule, text)
        rules_applied = F.when(F.col(f"{n}__canon"), F.array().cast("array<string>")).otherwise(
            F.array_compact(F.array(*changed))
        )
        columns += [value.alias(n), code.alias(f"{n}__reason"), rules_applied.alias(f"{n}__rules")]
        columns += [F.col(f"{n}__raw"), text.alias(f"{n}__text")]
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
    fields = clean_fields(raw)
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
    # Computed once: the cleaned and quarantine halves (and their reports) are separate actions
    # that would otherwise each run every rule again.
    fields = fields.select(
        *rules.META, *rules.VALUE_FIELDS, consent.alias("__consent"), changes.alias("changes"),
        *[F.col(f"{n}__raw") for n in rules.FIELD_NAMES], F.array_compact(F.array(*reasons)).alias("reasons"),
    ).localCheckpoint(eager=True)  # fmt: skip
    consent = F.col("__consent")
    cleaned = fields.where(consent & (F.size("reasons") == 0)).select(
        *rules.META, *rules.VALUE_FIELDS, "changes"
    )
    quarantine = fields.where(consent & (F.size("reasons") > 0)).select(
        *rules.META, *[F.col(f"{n}__raw").alias(n) for n in rules.FIELD_NAMES], "reasons"
    )
    without_consent = fields.where(~consent).select("submission_id")
    return mark_duplicates(cleaned), quarantine, without_consent


def mark_duplicates(cleaned: DataFrame) -> DataFrame:
    """As `pandas_engine.mark_duplicates`, with windows: exact resubmissions collapse to the first
    received (listing the others), a student with differing answers is flagged."""
    identified = F.col("student_ref").isNotNull()
    content = F.sha2(F.to_json(F.struct(*rules.VALUE_FIELDS)), 256)
    same = Window.partitionBy("__content").orderBy(
        F.col("received_at").asc_nulls_last(), F.col("submission_id")
    )
    whole = same.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    ranked = (
        cleaned.withColumn("__content", content)
        .withColumn("__rank", F.when(identified, F.row_number().over(same)).otherwise(F.lit(1)))
        .withColumn("__ids", F.when(identified, F.collect_list("submission_id").over(whole)))
    )
    kept = ranked.where(F.col("__rank") == 1).withColumn(
        "duplicates",
        F.coalesce(
            F.slice("__ids", 2, F.greatest(F.size("__ids"), F.lit(1))), F.array().cast("array<string>")
        ),
    )
    student = Window.partitionBy("school_id", "student_ref")
    return kept.withColumn("duplicate_conflict", identified & (F.count(F.lit(1)).over(student) > 1)).drop(
        "__content", "__rank", "__ids"
    )
