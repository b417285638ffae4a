"""JSON lines read as a table: one object per line, its keys the columns (first seen first).

`io` hands a file here when its name ends in .jsonl, .ndjson or .json (optionally .gz), or when a
file of no known kind (stdin) begins with `{` (`io.is_json_lines`). Values become the strings a CSV cell would hold (true/false
lower-case, numbers as written, null as empty). A line that is not a JSON object is skipped and
counted, as a CSV row with the wrong number of fields is.
"""

from __future__ import annotations

import json

from dupfinder.errors import InputError

SUFFIXES = (".jsonl", ".ndjson", ".json")  # what `io` reads as JSON lines by the file's name


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def json_lines_table(text: str, report) -> tuple[list[str], list[list[str]]]:
    """Header (every key, in the order first seen) and rows (missing keys empty) of JSON lines text.
    `report` (an io.ReadReport) counts the lines skipped, as rows read and skipped; the caller counts
    the rows returned. No line with keys is an InputError."""
    objects = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            why = None if isinstance(obj, dict) else "not a JSON object"
        except ValueError:
            why = "not valid JSON"
        if why:
            report.rows += 1
            report.skipped[why] += 1
        else:
            objects.append(obj)
    header = list(dict.fromkeys(k for obj in objects for k in obj))
    if not header:
        raise InputError(f"{report.path} has no columns: no line is a JSON object with keys (JSON lines: one object per line)")
    return header, [[cell(obj.get(k)) for k in header] for obj in objects]
