"""Benchmarks anyone can rerun: seglab's training and inference speed against the notebooks' way and
against this CPU's measured limit (``seglab bench train``, ``seglab bench infer``).

train_bench.py (against notebook.py, the notebooks' loop) and infer_bench.py each measure their paths in
one process, in turns, so the ratios hold on a noisy machine; flops.py relates throughput to the matmul
peak; memory.py gives per-path peak RSS.
"""
