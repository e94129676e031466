"""Report: the HTML pages and every figure, rendered from verdicts already reached, with no torch at import.

`theme` (figures without global state), `figures` (every plot), `pages` (a run, a group of seeds, a
comparison, a sweep), `templates/` (Jinja2, autoescape on).
"""
