"""Store: the results database and the runs in it.

`schema` (the tables and their migrations), `codec` (per-example outcomes as blobs), `database`
(`ResultsDB`, checked at its one boundary), `sweep_tables` (the two sweeps' tables, a part of `ResultsDB`),
`provenance` (what a run records of its environment),
`runs` (one way to open a stored run: its settings, its members, its data).
"""
