"""Paper reproductions: one script per figure or table (experiments/common.py holds what they share).

Run one with ``python -m experiments.<name>``; gather every report with ``python -m experiments.report``.
"""
import os

# The experiments' numpy work is many small matrix products; a multi-threaded BLAS on a shared 2-core
# machine spends most of its time spinning (measured 20x slower under load). Must precede numpy's import.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
