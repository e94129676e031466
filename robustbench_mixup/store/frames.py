"""The results database as pandas DataFrames, for notebooks: `open(out).frame("attack_results")`.

Every table reads back through `ResultsDB`, the database's one checked boundary, and the per-example blobs are
decoded into numpy arrays (a bool per test example, per probe pair or per corrupted label; a float32 gradient norm
per pair), each checked against the count its row states.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_mixup.settings.errors import UsageError
from robustbench_mixup.settings.layout import Layout
from robustbench_mixup.store.codec import unpack_outcomes, unpack_values
from robustbench_mixup.store.database import ResultsDB
from robustbench_mixup.store.schema import SCHEMA_VERSION, expected_schema

if TYPE_CHECKING:
    import pandas

# (table, blob column) -> (the column that says how many values it holds, its decoder)
BLOBS: dict[tuple[str, str], tuple[str, Callable[[Any, int], Any]]] = {
    ("attack_results", "correct"): ("n", unpack_outcomes),
    ("worst_case", "correct"): ("n", unpack_outcomes),
    ("clean_results", "correct"): ("n", unpack_outcomes),
    ("probe_results", "missed"): ("pairs", unpack_outcomes),
    ("probe_results", "norms"): ("pairs", unpack_values),
    ("sweep_jobs", "corrupted_fit"): ("n_corrupted", unpack_outcomes),
    ("robust_results", "correct"): ("n", unpack_outcomes),
}


class Results:
    """The results database under an output root, read as DataFrames (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted(expected_schema(SCHEMA_VERSION)))

    def frame(self, table: str) -> pandas.DataFrame:
        """Every row of `table` as a DataFrame, its per-example blob columns decoded to numpy arrays."""
        import pandas

        if table not in self.tables:
            raise ValueError(f"table must be one of {', '.join(self.tables)}, got {table!r}")
        with ResultsDB(self.path) as db:
            cursor = db.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")  # a name from the schema, not the user
            columns = [d[0] for d in cursor.description]
            rows = [dict(r) for r in cursor]
            for (name, column), (count, decode) in BLOBS.items():
                if name != table:
                    continue
                for r in rows:
                    where = f"{table}.{column} of {r.get('run', r.get('sweep'))!r}"
                    r[column] = None if r[column] is None else db._unpacked(where, decode, r[column], r[count])
        return pandas.DataFrame(rows, columns=columns)


def open(out: str | os.PathLike[str] = ".") -> Results:
    """The results database under output root `out`, checked now (a missing, foreign or damaged file is one
    UsageError, and nothing is created)."""
    layout = Layout(out)
    if not layout.database.is_file():
        raise UsageError(f"no results database under {str(layout.root)!r}: run a command with --out there first")
    ResultsDB(layout.database).close()  # the file's checks, once, before anything reads it
    return Results(layout.database)
