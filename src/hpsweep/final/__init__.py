"""The final stage: choose the best configuration, retrain it, export it."""
