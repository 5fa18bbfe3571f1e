"""Teacher labelling time: ``keras-distill label`` (Apache Beam's DirectRunner, one worker and
two worker processes) against the single-process ``keras_distill.store.write``, in one run.

The inputs are digits tiled to a heavier image (8x8 -> 64x64 by default) and the teacher a
small stack of convolutions on it, so that the teacher dominates the time. Each way writes
the same store (checked: the same key, outputs within 1e-5) into a temporary folder; nothing
is written into the repository.

    python bench/label_speed.py                  # about 4 minutes on 2 cores
    python bench/label_speed.py --samples 5000 --tile 2

Two worker processes cannot beat one process that already runs TensorFlow on every core: on
a machine with C cores, each worker's TensorFlow uses C threads (the last row gives each
worker one thread instead). The table says what the pipeline costs on one machine (start-up
of the workers, per-row elements, the shuffle by shard); the workers pay off where they
stand on separate machines (Dataflow, Flink, Spark) or where the teacher leaves cores idle.
"""

import argparse
import os
import shutil
import tempfile
import time

import keras
import numpy as np
from common import print_table

from keras_distill.data import load, load_digits
from keras_distill.io import load_model
from keras_distill.store import write
from keras_distill.store.beam import label

TWO_WORKERS = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def heavy_inputs(samples, tile, seed=0):
    """``samples`` digits (drawn with repeats) tiled ``tile`` x ``tile``, with a little noise
    so that no two rows are equal."""
    data = load_digits(seed=0)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(data.x_train), samples)
    x = np.tile(data.x_train[pick], (1, tile, tile, 1))
    x = x + rng.normal(0, 0.01, x.shape).astype("float32")
    return x.astype("float32"), data.y_train[pick]


def heavy_teacher(shape, classes=10, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape)]
    for width in (32, 64, 64):
        layers += [keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
                   keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
                   keras.layers.MaxPooling2D()]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]
    return keras.Sequential(layers)


def _label(teacher_path, source, out, threads, **kwargs):
    """``label``; with ``threads``, the workers' TensorFlow runs that many threads an op
    (``TF_NUM_INTRAOP_THREADS``, read by the worker processes as they start)."""
    saved = os.environ.get("TF_NUM_INTRAOP_THREADS")
    if threads is not None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = threads
    try:
        return label(teacher_path, source, out, **kwargs).store
    finally:
        os.environ.pop("TF_NUM_INTRAOP_THREADS", None)
        if saved is not None:
            os.environ["TF_NUM_INTRAOP_THREADS"] = saved


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--tile", type=int, default=8, help="8x8 digits tiled N x N")
    parser.add_argument("--shard-size", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=None)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="keras-distill-label-bench-")
    try:
        x, y = heavy_inputs(args.samples, args.tile)
        source = os.path.join(tmp, "heavy.npz")
        np.savez(source, x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], x_test=x[:10],
                 y_test=y[:10])
        teacher_path = os.path.join(tmp, "teacher.keras")
        heavy_teacher(x.shape[1:]).save(teacher_path)
        teacher = load_model(teacher_path)
        # what label reads: the same rows, and the same fingerprint (a large .npz is read as
        # memory-mapped .npy files, a lazy array, and keyed by what identifies its files)
        x = load(source).x_train
        common = {"top_k": args.top_k, "shard_size": args.shard_size}

        runs = [("store.write (one process)", lambda out: write(
            teacher, x, out, batch_size=args.batch_size, **common))]
        for name, options, threads in (
                ("label, DirectRunner, 1 worker", [], None),
                ("label, DirectRunner, 2 workers (multi_processing)", TWO_WORKERS, None),
                ("label, 2 workers of 1 TensorFlow thread", TWO_WORKERS, "1")):
            runs.append((name, lambda out, options=options, threads=threads: _label(
                teacher_path, source, out, threads, batch_size=args.batch_size,
                pipeline_args=options, **common)))
        rows, stores = [], []
        for name, run in runs:
            store, seconds = timed(lambda run=run: run(os.path.join(tmp, f"store{len(rows)}")))
            stores.append(store)
            rows.append([name, f"{seconds:.1f}", f"{args.samples / seconds:,.0f}"])
        base = float(rows[0][1])
        for row in rows:
            row.append(f"{float(row[1]) / base:.2f}x")
        print(f"\n{args.samples} samples of shape {x.shape[1:]}, teacher "
              f"{teacher.count_params():,} parameters, shards of {args.shard_size}, batches of "
              f"{args.batch_size}, {os.cpu_count()} cores.\n")
        print_table(["way", "seconds", "samples/s", "time vs store.write"], rows)
        reference = stores[0].outputs()[:]
        for store in stores[1:]:
            assert store.meta["key"] == stores[0].meta["key"], "the stores' keys differ"
            np.testing.assert_allclose(store.outputs()[:], reference, atol=1e-5)
        print("\nThe stores agree: the same key, outputs within 1e-5.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
