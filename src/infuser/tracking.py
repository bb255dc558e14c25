"""The loggers of ``trainer.loggers``: ``csv``, ``tensorboard``, ``wandb`` and ``mlflow``.

Each is Lightning's own logger, handed to Fabric, so metrics reach every one through
``fabric.log_dict``. W&B and MLflow are optional extras (``pip install 'infuser[wandb]'``,
``'infuser[mlflow]'``); asking for one that is not installed stops the run with one line naming
``trainer.loggers`` and the pip command, before any model loads.

Beside the metrics, each iteration's ``samples/`` completions go to the loggers that keep tables:
a W&B table ``samples`` (stepped by iteration) and an MLflow table artifact
``samples/iter_NNNNN.json``, so what the roles write can be read where the curves are.

Where they write: CSV and TensorBoard under ``run_dir``; W&B under ``run_dir/wandb`` (project
``$WANDB_PROJECT`` or ``infuser``; ``WANDB_MODE=offline`` keeps it local); MLflow to
``$MLFLOW_TRACKING_URI`` when set, else a local file store in ``run_dir/mlruns`` (the only local
backend ``mlflow-skinny`` has; MLflow 3 refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, which
is therefore set for that store), experiment ``$MLFLOW_EXPERIMENT_NAME`` or ``infuser``. Both name
the run after ``run_dir``. A resumed run starts a new W&B / MLflow run and replays the
checkpoint's metric history into it (:meth:`infuser.loop.InfuserLoop.fit`), as the CSV log is.

Torch-free at import: the loggers are imported when made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from infuser.config import ConfigurationError
from infuser.console import hide_rebuilt_log_warning


@dataclass(frozen=True)
class OptionalLogger:
    """A logger whose package is an optional extra of infuser."""

    module: str  # what must import
    extra: str  # ``pip install 'infuser[<extra>]'``


OPTIONAL: dict[str, OptionalLogger] = {"wandb": OptionalLogger("wandb", "wandb"),
                                       "mlflow": OptionalLogger("mlflow", "mlflow")}


def check_installed(names: Sequence[str]) -> None:
    """Refuse a logger whose package is missing, in one line naming the key and the install command."""
    for name in names:
        optional = OPTIONAL.get(name)
        if optional is None:
            continue
        try:
            import_module(optional.module)
        except ImportError:
            raise ConfigurationError(
                f"trainer.loggers: `{name}` needs the {optional.module} package, which is not installed; "
                f"pip install 'infuser[{optional.extra}]'") from None


def make_loggers(names: Sequence[str], root: Path, resuming: bool) -> list:
    """The loggers, writing under ``root`` (see the module's docstring for W&B and MLflow).

    The CSV file is flushed after every iteration, so a killed run loses no completed row. A
    resumed run logs the checkpoint's metric history again (see :meth:`InfuserLoop.fit`), so
    TensorBoard is told to hide every event of the earlier process (``purge_step=0``): rows of an
    iteration that was interrupted and is run again appear once.
    """
    check_installed(names)
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    if resuming:
        hide_rebuilt_log_warning()
    made = []
    for name in names:
        if name == "csv":
            made.append(CSVLogger(root, name="logs", version="", flush_logs_every_n_steps=1))
        elif name == "tensorboard":
            made.append(TensorBoardLogger(root, name="tensorboard", version="",
                                          **({"purge_step": 0} if resuming else {})))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            made.append(WandbLogger(name=root.name, save_dir=str(root),
                                    project=os.environ.get("WANDB_PROJECT", "infuser")))
        else:
            made.append(_mlflow_logger(root))
    return made


def _mlflow_logger(root: Path) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking_uri = (root / "mlruns").resolve().as_uri()
    return MLFlowLogger(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "infuser"), run_name=root.name,
                        tracking_uri=tracking_uri)


def finish(loggers: Sequence[object]) -> None:
    """End a successful run's loggers. Lightning's ``WandbLogger.finalize`` leaves the W&B run open
    (a Trainer's process ends soon after), so it is finished here: its summary is written and an
    offline run is complete on disk when ``fit`` returns, not only at interpreter exit."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def log_samples(loggers: Sequence[object], iteration: int, rows: list[dict[str, Any]]) -> None:
    """Hand iteration ``iteration``'s logged completions (``samples/iter_NNNNN.jsonl``'s rows) to the
    loggers that keep tables; the others have no table and are skipped."""
    if not rows:
        return
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    columns = list(rows[0])
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table("samples", columns=columns, data=[[row.get(c) for c in columns] for row in rows],
                             step=iteration)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_table(logger.run_id, data={c: [row.get(c) for row in rows] for c in columns},
                                        artifact_file=f"samples/iter_{iteration:05d}.json")
