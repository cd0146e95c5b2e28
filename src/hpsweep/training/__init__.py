"""The training engine: one run = one config, one seed, one output directory.

engine.train_run is the entry point. Importing this package imports no torch: the
run store (runstore.py) and the planned-run launcher are read by torch-free code.
"""
