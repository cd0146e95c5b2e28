"""The per-epoch metrics a run records, by their two names: the key in metrics.json's
history and the TensorBoard tag. The trainer writes both; extraction, figures and
tracking read them; this is the one list."""

from __future__ import annotations

# history key -> TensorBoard tag, in the order the trainer logs them
EPOCH_SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss",
                 "val_acc": "val/acc", "lr": "lr", "epoch_s": "time/epoch_s"}
EPOCH_METRICS = tuple(EPOCH_SCALARS)
EPOCH_TAGS = tuple(EPOCH_SCALARS.values())
TAG_METRIC = {tag: key for key, tag in EPOCH_SCALARS.items()}
STEP_TAG = "train/loss_step"  # the training loss every train.log_every_steps steps
# metrics.json keys logged as TensorBoard hparams metrics ("hparam/<key>")
HPARAM_METRICS = ("best_val_acc", "best_val_loss", "final_val_acc", "test_acc", "epochs_run")
