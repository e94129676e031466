"""The results database's tables, version by version: each migration is a list of SQL statements."""

from __future__ import annotations

import functools
import sqlite3

SCHEMA_VERSION = 9

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            name TEXT PRIMARY KEY,          -- the --run NAME; safe as a path component
            kind TEXT NOT NULL,             -- 'train' (later: 'sweep', ...)
            status TEXT NOT NULL,           -- 'running' | 'done'
            created TEXT NOT NULL,          -- ISO 8601, UTC
            updated TEXT NOT NULL,
            seed INTEGER,
            dataset TEXT,
            config TEXT NOT NULL,           -- JSON: the resolved configuration
            environment TEXT NOT NULL,      -- JSON: versions, device, git commit, command line
            timings TEXT NOT NULL DEFAULT '{}'  -- JSON: seconds per stage
        )""",
        """CREATE TABLE epochs (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- 'erm' | 'mixup' | 'surrogate'
            epoch INTEGER NOT NULL,         -- 1-based
            lr REAL, train_loss REAL, train_acc REAL, test_acc REAL,
            seconds REAL, images_per_s REAL,
            PRIMARY KEY (run, model, epoch)
        )""",
    ],
    [
        """CREATE TABLE attack_results (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- the classifier scored: 'erm' | 'mixup'
            attack TEXT NOT NULL,           -- 'fgsm' | 'ifgsm'
            mode TEXT NOT NULL,             -- 'white' | 'black'
            source TEXT NOT NULL,           -- who crafted the examples: the model itself, 'surrogate' or a path
            eps REAL NOT NULL, steps INTEGER NOT NULL, step_size REAL NOT NULL,
            backend TEXT NOT NULL,          -- 'native' | 'torchattacks' | 'foolbox'
            split TEXT NOT NULL, n INTEGER NOT NULL,
            top1 REAL NOT NULL, top1_err REAL NOT NULL, top1_lo REAL NOT NULL, top1_hi REAL NOT NULL,
            top5 REAL NOT NULL, top5_err REAL NOT NULL, top5_lo REAL NOT NULL, top5_hi REAL NOT NULL,
            clean_top1 REAL NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (run, model, attack, mode, source, eps, steps, step_size, backend, split, n)
        )""",
        """CREATE TABLE attack_flags (
            run TEXT NOT NULL REFERENCES runs(name),
            attack TEXT NOT NULL, backend TEXT NOT NULL, n INTEGER NOT NULL,
            check_name TEXT NOT NULL,       -- eps0_equals_clean | monotone_in_eps | ifgsm_le_fgsm | black_ge_white
            model TEXT NOT NULL, mode TEXT NOT NULL, eps REAL NOT NULL,
            detail TEXT NOT NULL, created TEXT NOT NULL
        )""",
    ],
    [
        """CREATE TABLE probe_results (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- 'erm' | 'mixup'
            split TEXT NOT NULL,            -- where the pairs come from: 'train' | 'test'
            same_class TEXT NOT NULL,       -- 'exclude' | 'include'
            pairs INTEGER NOT NULL, seed INTEGER NOT NULL,
            lam REAL NOT NULL,              -- x = lam * x_i + (1 - lam) * x_j
            miss_rate REAL NOT NULL, miss_lo REAL NOT NULL, miss_hi REAL NOT NULL,   -- 95% Wilson
            grad_norm REAL NOT NULL, norm_lo REAL NOT NULL, norm_hi REAL NOT NULL,   -- 95% bootstrap
            created TEXT NOT NULL,
            PRIMARY KEY (run, model, split, same_class, pairs, lam)
        )""",
    ],
    [
        """CREATE TABLE sweeps (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,             -- 'corrupt'
            config TEXT NOT NULL,           -- JSON: the grid and the training settings
            created TEXT NOT NULL, updated TEXT NOT NULL
        )""",
        """CREATE TABLE sweep_jobs (
            sweep TEXT NOT NULL REFERENCES sweeps(name),
            key TEXT NOT NULL,              -- e.g. noise0.5-alpha8-dropout0-seed0
            noise REAL NOT NULL, alpha REAL NOT NULL, dropout REAL NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL,           -- 'pending' | 'running' | 'done'
            starts INTEGER NOT NULL DEFAULT 0,  -- times the job was handed to a worker
            epochs INTEGER,
            best_test_err REAL, last_test_err REAL,
            train_real_err REAL, train_corrupted_err REAL, train_corrupted_true_err REAL,  -- at the last epoch
            updated TEXT NOT NULL,
            PRIMARY KEY (sweep, key)
        )""",
        """CREATE TABLE sweep_epochs (
            sweep TEXT NOT NULL, key TEXT NOT NULL, epoch INTEGER NOT NULL,
            train_loss REAL, test_err REAL,
            train_real_err REAL, train_corrupted_err REAL, train_corrupted_true_err REAL,
            PRIMARY KEY (sweep, key, epoch),
            FOREIGN KEY (sweep, key) REFERENCES sweep_jobs(sweep, key)
        )""",
    ],
    [  # strong attacks: restarts, the seed of their random starts, the precision; per-example outcomes
        "ALTER TABLE attack_results RENAME TO attack_results_v4",
        """CREATE TABLE attack_results (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- the classifier scored: 'erm' | 'mixup'
            attack TEXT NOT NULL,           -- a key of config.ATTACKS ('fgsm', 'pgd', 'apgd-ce', ...)
            mode TEXT NOT NULL,             -- 'white' | 'black'
            source TEXT NOT NULL,           -- who crafted the examples: the model itself, 'surrogate' or a path
            eps REAL NOT NULL, steps INTEGER NOT NULL, step_size REAL NOT NULL,
            backend TEXT NOT NULL,          -- 'native' | 'torchattacks' | 'foolbox'
            split TEXT NOT NULL, n INTEGER NOT NULL,
            top1 REAL NOT NULL, top1_err REAL NOT NULL, top1_lo REAL NOT NULL, top1_hi REAL NOT NULL,
            top5 REAL NOT NULL, top5_err REAL NOT NULL, top5_lo REAL NOT NULL, top5_hi REAL NOT NULL,
            clean_top1 REAL NOT NULL,
            created TEXT NOT NULL,
            restarts INTEGER NOT NULL DEFAULT 1,
            seed INTEGER NOT NULL DEFAULT 0,        -- of the random starts (the run's seed)
            precision TEXT NOT NULL DEFAULT 'fp32', -- 'fp32' | 'bf16'
            correct BLOB,                   -- per example, top-1 correct: numpy.packbits order; NULL before v5
            PRIMARY KEY (run, model, attack, mode, source, eps, steps, step_size, restarts, seed, precision,
                         backend, split, n)
        )""",
        """INSERT INTO attack_results (run, model, attack, mode, source, eps, steps, step_size, backend, split, n,
               top1, top1_err, top1_lo, top1_hi, top5, top5_err, top5_lo, top5_hi, clean_top1, created)
           SELECT run, model, attack, mode, source, eps, steps, step_size, backend, split, n,
               top1, top1_err, top1_lo, top1_hi, top5, top5_err, top5_lo, top5_hi, clean_top1, created
           FROM attack_results_v4""",
        "DROP TABLE attack_results_v4",
        # 'failed' | 'noise' | 'unchecked': flags of older versions, never tested for significance
        "ALTER TABLE attack_flags ADD COLUMN status TEXT NOT NULL DEFAULT 'unchecked'",
        "ALTER TABLE attack_flags ADD COLUMN p_value REAL",
        """CREATE TABLE attack_indicators (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL, attack TEXT NOT NULL, backend TEXT NOT NULL, n INTEGER NOT NULL,
            steps INTEGER NOT NULL, step_size REAL NOT NULL, restarts INTEGER NOT NULL, precision TEXT NOT NULL,
            eps REAL NOT NULL,
            indicator TEXT NOT NULL,        -- a key of indicators.INDICATORS
            value REAL NOT NULL, threshold REAL NOT NULL,
            status TEXT NOT NULL,           -- 'ok' | 'noise' | 'fired'
            p_value REAL, detail TEXT NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (run, model, attack, backend, n, steps, step_size, restarts, precision, eps, indicator)
        )""",
        """CREATE TABLE worst_case (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL, eps REAL NOT NULL, n INTEGER NOT NULL,
            attacks TEXT NOT NULL,          -- JSON list of the attacks every example had to survive
            top1 REAL NOT NULL, top1_lo REAL NOT NULL, top1_hi REAL NOT NULL,
            correct BLOB NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (run, model, eps, n)
        )""",
    ],
    [  # paired verdicts: per-example outcomes of every measurement a claim reads, and groups of seeds
        """CREATE TABLE clean_results (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL, split TEXT NOT NULL, n INTEGER NOT NULL,
            top1 REAL NOT NULL,
            correct BLOB NOT NULL,          -- per example, top-1 correct after the last epoch (packbits)
            created TEXT NOT NULL,
            PRIMARY KEY (run, model, split, n)
        )""",
        "ALTER TABLE probe_results ADD COLUMN missed BLOB",  # per pair at this λ: neither label (packbits)
        "ALTER TABLE probe_results ADD COLUMN norms BLOB",  # per pair at this λ: float32, little-endian
        # per corrupted example, at the last epoch: predicts its corrupted label (packbits); NULL before v6
        "ALTER TABLE sweep_jobs ADD COLUMN corrupted_fit BLOB",
        "ALTER TABLE sweep_jobs ADD COLUMN n_corrupted INTEGER",
        """CREATE TABLE run_groups (
            name TEXT PRIMARY KEY,          -- a name shared with no run
            runs TEXT NOT NULL,             -- JSON list of run names, one per seed, in seed order
            created TEXT NOT NULL, updated TEXT NOT NULL
        )""",
    ],
    [  # the mixing family: why a model is (not) robust
        """CREATE TABLE diagnostics (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL, n INTEGER NOT NULL,  -- the first n test examples
            seed INTEGER NOT NULL,          -- of the random sign noise
            metric TEXT NOT NULL,           -- clean_acc, ece, median_margin, grad_norm_median, grad_norm_p90,
                                            -- grad_underflow, noise_acc@EPS (see diagnostics.Diagnostics.summary)
            value REAL NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (run, model, n, metric)
        )""",
        # the sweep job's training method; every job before v7 was ERM (α = 0) or mixup
        "ALTER TABLE sweep_jobs ADD COLUMN mixing TEXT NOT NULL DEFAULT 'mixup'",
    ],
    [  # robustness sweeps
        """CREATE TABLE robust_cells (      -- a robustness sweep's grid (the sweep itself: sweeps, kind 'robust')
            sweep TEXT NOT NULL REFERENCES sweeps(name),
            key TEXT NOT NULL,              -- e.g. alpha0.2-epochs15-seed0
            alpha REAL NOT NULL, epochs INTEGER NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL,           -- 'pending' | 'running' | 'done'
            starts INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL,
            PRIMARY KEY (sweep, key)
        )""",
        """CREATE TABLE robust_results (
            sweep TEXT NOT NULL, key TEXT NOT NULL,
            model TEXT NOT NULL,            -- the method
            attack TEXT NOT NULL,           -- 'clean', or a key of config.ATTACKS (white box)
            eps REAL NOT NULL, n INTEGER NOT NULL, top1 REAL NOT NULL,
            correct BLOB NOT NULL,          -- per test example, top-1 correct (packbits)
            PRIMARY KEY (sweep, key, model, attack, eps),
            FOREIGN KEY (sweep, key) REFERENCES robust_cells(sweep, key)
        )""",
    ],
    [  # early stop: an example leaves a strong attack at its first misclassified point; part of the identity
        "ALTER TABLE attack_results RENAME TO attack_results_v8",
        """CREATE TABLE attack_results (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL,            -- the classifier scored: 'erm' | 'mixup'
            attack TEXT NOT NULL,           -- a key of config.ATTACKS ('fgsm', 'pgd', 'apgd-ce', ...)
            mode TEXT NOT NULL,             -- 'white' | 'black'
            source TEXT NOT NULL,           -- who crafted the examples: the model itself, 'surrogate' or a path
            eps REAL NOT NULL, steps INTEGER NOT NULL, step_size REAL NOT NULL,
            backend TEXT NOT NULL,          -- 'native' | 'torchattacks' | 'foolbox'
            split TEXT NOT NULL, n INTEGER NOT NULL,
            top1 REAL NOT NULL, top1_err REAL NOT NULL, top1_lo REAL NOT NULL, top1_hi REAL NOT NULL,
            top5 REAL NOT NULL, top5_err REAL NOT NULL, top5_lo REAL NOT NULL, top5_hi REAL NOT NULL,
            clean_top1 REAL NOT NULL,
            created TEXT NOT NULL,
            restarts INTEGER NOT NULL DEFAULT 1,
            seed INTEGER NOT NULL DEFAULT 0,        -- of the random starts (the run's seed)
            precision TEXT NOT NULL DEFAULT 'fp32', -- 'fp32' | 'bf16'
            correct BLOB,                   -- per example, top-1 correct: numpy.packbits order; NULL before v5
            early_stop INTEGER NOT NULL DEFAULT 0,  -- 1: white-box PGD/APGD stopped per example at its first success
            PRIMARY KEY (run, model, attack, mode, source, eps, steps, step_size, restarts, seed, precision,
                         early_stop, backend, split, n)
        )""",
        """INSERT INTO attack_results (run, model, attack, mode, source, eps, steps, step_size, backend, split, n,
               top1, top1_err, top1_lo, top1_hi, top5, top5_err, top5_lo, top5_hi, clean_top1, created, restarts,
               seed, precision, correct)
           SELECT run, model, attack, mode, source, eps, steps, step_size, backend, split, n,
               top1, top1_err, top1_lo, top1_hi, top5, top5_err, top5_lo, top5_hi, clean_top1, created, restarts,
               seed, precision, correct
           FROM attack_results_v8""",
        "DROP TABLE attack_results_v8",
        "ALTER TABLE attack_indicators RENAME TO attack_indicators_v8",
        """CREATE TABLE attack_indicators (
            run TEXT NOT NULL REFERENCES runs(name),
            model TEXT NOT NULL, attack TEXT NOT NULL, backend TEXT NOT NULL, n INTEGER NOT NULL,
            steps INTEGER NOT NULL, step_size REAL NOT NULL, restarts INTEGER NOT NULL, precision TEXT NOT NULL,
            eps REAL NOT NULL,
            indicator TEXT NOT NULL,        -- a key of indicators.INDICATORS
            value REAL NOT NULL, threshold REAL NOT NULL,
            status TEXT NOT NULL,           -- 'ok' | 'noise' | 'fired'
            p_value REAL, detail TEXT NOT NULL, created TEXT NOT NULL,
            early_stop INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run, model, attack, backend, n, steps, step_size, restarts, precision, early_stop, eps,
                         indicator)
        )""",
        """INSERT INTO attack_indicators (run, model, attack, backend, n, steps, step_size, restarts, precision, eps,
               indicator, value, threshold, status, p_value, detail, created)
           SELECT run, model, attack, backend, n, steps, step_size, restarts, precision, eps,
               indicator, value, threshold, status, p_value, detail, created
           FROM attack_indicators_v8""",
        "DROP TABLE attack_indicators_v8",
    ],
]

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


@functools.cache
def expected_schema(version: int) -> dict[str, frozenset[str]]:
    """Table → columns of a database at schema `version` (MIGRATIONS[:version] applied to an empty one)."""
    con = sqlite3.connect(":memory:")
    try:
        for steps in MIGRATIONS[:version]:
            for sql in steps:
                con.execute(sql)
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: frozenset(r[1] for r in con.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        con.close()
