"""The checkpoint dir of a training run (``OUTPUT/checkpoints``): what may be resumed, and how.

A re-run into the same output resumes after the last saved epoch, but only a run *of the same
inputs*: :func:`run_identity` (a fingerprint of the training data: the content hashes and labels of
the train and validation rows and the preparation settings, plus every training setting that shapes
the weights: size, architecture, learning rate, L2, batch size, workers, augmentation, class weights,
seed) is stored as ``checkpoints/run.json`` next to the checkpoints.  A re-run whose identity differs
**refuses to resume** (:class:`batchml.errors.JobError` naming what changed) rather than silently
mixing the old weights into a new run or deleting them: write to a new output, or delete
``OUTPUT/checkpoints`` to start afresh.  ``epochs`` is not part of the identity (a re-run with more
epochs continues the same run).

Restoring tries the checkpoints newest first and skips any that cannot be read in full (every tensor
is read, so a truncated or corrupted file fails its CRC check), falling back to the previous one.

Non-chief workers must save too (``MultiWorkerMirroredStrategy``); they save into
``OUTPUT/_scratch/worker-N``, which the driver removes before and after training, so a killed run
leaves nothing behind in ``/tmp`` and its scratch is cleaned by the next run.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil

from batchml.errors import JobError
from batchml.io.atomic import write_json
from batchml.tumor import schema as S

LOG = logging.getLogger("batchml.tumor")

RUN_FILE = "run.json"
SCRATCH = "_scratch"
# TrainParams fields that do not change what a resumed run computes
NOT_IDENTITY = ("output", "epochs", "fault_kill", "patience")


def checkpoint_dir(output: str) -> str:
    return os.path.join(output, S.CHECKPOINTS)


def scratch_dir(output: str, rank: int) -> str:
    """Where non-chief worker ``rank`` writes its (discarded) checkpoints."""
    return os.path.join(output, SCRATCH, f"worker-{rank}")


def clean_scratch(output: str) -> None:
    """Remove every worker's scratch dir (stale ones of a killed run included)."""
    shutil.rmtree(os.path.join(output, SCRATCH), ignore_errors=True)


def data_fingerprint(rows: list[tuple[str, int, str]], prepared: dict) -> str:
    """sha256 of the ``(hash, label, split)`` rows (in sorted order) and of the preparation settings."""
    h = hashlib.sha256(json.dumps(prepared, sort_keys=True).encode())
    for content_hash, label, split in sorted(rows):
        h.update(f"{content_hash}:{label}:{split}\n".encode())
    return h.hexdigest()


def run_identity(params: dict, data: str, workers: int) -> dict:
    """The settings a checkpoint belongs to (see the module docstring)."""
    out = {k: v for k, v in sorted(params.items()) if k not in NOT_IDENTITY}
    out.update(workers=workers, data=data)
    return out


def checkpoint_numbers(directory: str) -> list[int]:
    """Numbers ``N`` of the ``ckpt-N`` checkpoints in ``directory``, newest first."""
    out = []
    for index in glob.glob(os.path.join(directory, "ckpt-*.index")):
        m = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index))
        if m:
            out.append(int(m.group(1)))
    return sorted(out, reverse=True)


def claim_checkpoints(output: str, identity: dict) -> bool:
    """Check that ``output``'s checkpoints (if any) belong to a run of ``identity`` and record it.

    Returns
    -------
    bool
        True when there are checkpoints to resume from.

    Raises
    ------
    JobError
        The checkpoints were written by a run with other inputs or settings.
    """
    directory = checkpoint_dir(output)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, RUN_FILE)
    have = bool(checkpoint_numbers(directory))
    if have:
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
        if old != identity:
            changed = ("no record of the run that wrote them" if old is None else ", ".join(
                f"{k} {old.get(k)!r} -> {identity.get(k)!r}" if k != "data" else "the training data"
                for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)))
            raise JobError(f"{directory} holds checkpoints of a different run ({changed}); it is not "
                           "resumed: write to a new --output, or delete that directory to start afresh")
    write_json(path, identity)
    return have


def readable(prefix: str) -> str | None:
    """None when every tensor of checkpoint ``prefix`` can be read, else the reason it cannot."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception as exc:  # noqa: BLE001  (tf raises DataLossError, NotFoundError, OutOfRange...)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def restore_latest_good(ckpt, directory: str) -> str | None:
    """Restore ``ckpt`` (a ``tf.train.Checkpoint``) from the newest readable checkpoint in
    ``directory``; return its prefix (None: nothing to restore).

    Raises
    ------
    JobError
        There are checkpoints but none can be read.
    """
    numbers = checkpoint_numbers(directory)
    for n in numbers:
        prefix = os.path.join(directory, f"ckpt-{n}")
        reason = readable(prefix)
        if reason is None:
            ckpt.restore(prefix).assert_existing_objects_matched()
            return prefix
        LOG.warning("checkpoint %s cannot be read (%s); falling back to the previous one", prefix, reason)
    if numbers:
        raise JobError(f"no checkpoint in {directory} can be read; delete it to start afresh")
    return None
