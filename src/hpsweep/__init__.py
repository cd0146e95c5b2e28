"""hpsweep: reproducible hyperparameter studies for PyTorch image classifiers.

The package is laid out like the study's DAG. Imports run one way, down this list:
core <- data <- training <- tuning, final <- analysis <- ops, bench, cli; core is
torch-free (the Snakefile reads it to build the DAG).

core/        the study itself
    schema.py        params.toml as typed, validated Params; ParamsError, one line a problem
    sections.py      one model per params.toml section ([study], [data], [model], ...)
    plan.py          the sweep plan: params expanded into runs named by their signature
    ids.py           ENGINE_VERSION (the engine's identity) and run_signature (the hash)
    layout.py        where every output lives (StudyPaths, per-stage paths): one owner
    study.py         a loaded study: params, paths, plan
    budget.py        a budgeted study's frozen plan (study.budget): its lock and overlay
    params_deps.py   which params keys each rule depends on; the params stamps
    runstatus.py     how a run ended (RunStatus) and which endings count
    metric_names.py  per-epoch metric keys and their TensorBoard tags
    stats.py         mean and Student-t interval over seeds, and its text
    dotted.py        nested configs as dotted keys
    gpus.py          which GPUs the machine shows, without torch
    atomic.py        atomic file writes
data/        the dataset stage (data/__init__.py lists its modules)
training/    one run: engine, models, schedules, augmentation, checkpoints, writer;
             runner (a planned run), runstore (which runs are complete or stale)
tuning/      the Optuna stage (tuning/__init__.py lists its modules)
final/       select (which config), retrain (K seeds, test accuracy), export (model files)
analysis/    extract (TensorBoard -> tables), tables (summary CSVs), plots, report
             (report_sweeps: its sweep-stage sections; report_value: what each stage
             cost and bought, the control and the verdict; markdown: its tables and
             number formats), tracking (MLflow export)
ops/         status (`hpsweep status` collects), status_text (and prints), jobs (what
             Snakemake jobs share), threads (a training job's threads, the jobs that
             run at once), gpu_slots (a GPU of its own for each training job),
             dvcyaml, estimate (`hpsweep plan --estimate`), planner (fits a study
             into study.budget; `hpsweep plan`)
bench/       throughput (`hpsweep bench`), hpo (`hpsweep bench-hpo`)
cli.py       the `hpsweep` command
"""

__version__ = "0.1.0"
