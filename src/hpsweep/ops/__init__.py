"""Operations: study status, Snakemake job helpers, dvc.yaml."""
