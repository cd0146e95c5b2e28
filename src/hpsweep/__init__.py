"""hpsweep: reproducible hyperparameter studies for PyTorch image classifiers."""
__version__ = "0.1.0"
