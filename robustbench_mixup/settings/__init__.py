"""Settings: every choice a command can make, as validated dataclasses and closed sets, with no torch.

`config` (the settings of one run and its stages, the method and attack registries), `sweeps` (the grids
of the two sweeps), `presets` (the named jobs of `robust-eval run`), `layout` (every path under `--out`),
`fsutil` (atomic writes and locks), `commands` (the command lines a report suggests), `errors`.
"""
