"""Speed measurements, as side-by-side ratios from one process. Never imported by the package."""
