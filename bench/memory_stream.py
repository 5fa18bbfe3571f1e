"""The streaming row of ``bench/memory.py`` (``python bench/memory.py --stream``): a folder of
generated PNG images, far larger as one float32 array than the memory it is run in.

Generates ``--images`` (default 50,000) 96×96×3 PNGs in 10 class folders (each class a
bright square at its own place on noise), then, in one process sampled as in
``bench/memory.py`` (process and children): loads the folder (``keras_distill.data.load``:
files listed, split by file hash, nothing decoded), trains a small teacher for one epoch on
5,000 streamed training images, labels the whole training split into a teacher-output store
(``keras_distill.store.write``, or ``keras-distill label``'s Beam pipeline with ``--label
beam``), distills a small student from the store for one epoch, and exports it to int8
TFLite (calibrated on training images, verified in LiteRT on the whole test split). The old
in-memory loader's size is projected, not run: the float32 array alone, and the batches plus
their concatenation it held at once.
"""

from __future__ import annotations

import os
import tempfile
import time

SIZE, CLASSES = 96, 10
TARGET_MIB = 2048


def _write_images(args):
    root, start, stop, seed = args
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    cell = SIZE // 4
    for i in range(start, stop):
        c = i % CLASSES
        image = rng.integers(0, 90, (SIZE, SIZE, 3), dtype=np.uint8)
        r, q = divmod(c, 4)
        image[r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] += 150
        Image.fromarray(image).save(os.path.join(root, f"class_{c}", f"{i:06d}.png"),
                                    compress_level=1)


def make_folder(root, n, workers=2):
    """``n`` PNGs in ``root/class_<c>/``, written by ``workers`` processes."""
    from multiprocessing import Pool

    for c in range(CLASSES):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
    step = -(-n // (4 * workers))
    jobs = [(root, s, min(n, s + step), s) for s in range(0, n, step)]
    with Pool(workers) as pool:
        pool.map(_write_images, jobs)


def run(args, rec):
    """The stages, recorded by ``rec`` (``bench.memory.Recorder``); returns the summary."""
    import keras
    import numpy as np

    import keras_distill
    from keras_distill import Distiller, store
    from keras_distill.data import load
    from keras_distill.data.lazy import Subset
    from keras_distill.presets import student_cnn, teacher_cnn

    t = time.perf_counter()
    data = load(args.folder)
    n = len(data.x_train) + len(data.x_val) + len(data.x_test)
    rec.stage("list and split the folder", t, data.summary())

    t = time.perf_counter()
    keras.utils.set_random_seed(0)
    teacher = teacher_cnn(data.input_shape, CLASSES, width=8)
    teacher.compile(keras.optimizers.Adam(3e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    few = min(5000, len(data.x_train))  # a random subset: the splits are in file order
    rows = np.sort(np.random.default_rng(0).permutation(len(data.x_train))[:few])
    _fit_streamed(teacher, Subset(data.x_train, rows), data.y_train[rows], epochs=2)
    rec.stage("train teacher", t, f"{teacher.count_params():,} parameters, 2 epochs on {few:,} "
              "streamed images")

    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        t = time.perf_counter()
        path = os.path.join(tmp, "store")
        if args.label == "beam":
            from keras_distill.store import beam

            teacher_path = os.path.join(tmp, "teacher.keras")
            teacher.save(teacher_path)
            beam.label(teacher_path, args.folder, path, pipeline_args=[
                "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
        else:
            store.write(teacher, data.x_train, path, batch_size=256)
        written = store.TeacherStore.open(path)
        rec.stage(f"label the training split ({args.label})", t,
                  f"{written.meta['samples']:,} samples, store {written.nbytes() / 2**20:.1f} MiB")

        t = time.perf_counter()
        keras.utils.set_random_seed(0)
        student = student_cnn(data.input_shape, CLASSES, width=4)
        distiller = Distiller(None, student, temperature=4.0, alpha=0.1)
        distiller.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
        history = distiller.fit(data.x_train, data.y_train, cache_teacher=path, epochs=1,
                                batch_size=128, verbose=0)
        rec.stage("distill student (1 epoch)", t,
                  f"{student.count_params():,} parameters, train accuracy "
                  f"{history.history['accuracy'][-1]:.3f}")

        t = time.perf_counter()
        report = keras_distill.export(student, os.path.join(tmp, "export"), name="student",
                                      formats=("tflite",), quantization=("int8",),
                                      representative_data=data.x_train,
                                      eval_data=(data.x_test, data.y_test))
        artifact = report.get("tflite", "int8")
        rec.stage("export int8 TFLite", t, f"{'ok' if artifact.ok else 'FAILED'}, test accuracy "
                  f"{artifact.metrics.get('accuracy', float('nan')):.3f} on "
                  f"{len(data.x_test):,} images")
    one = 4 * SIZE * SIZE * 3
    return {"images": n, "float32_mib": n * one / 2**20}


def _fit_streamed(model, x, y, epochs):
    from keras_distill.data import stream

    model.fit(stream.dataset((x, y), batch_size=64, shuffle=True, seed=0), epochs=epochs,
              verbose=0, shuffle=False)


def main(args, rec, sampler, peaks_mib):
    made = args.folder is None
    tmp = None
    if made:
        tmp = tempfile.TemporaryDirectory(prefix="bench_images_")
        args.folder = tmp.name
        t = time.perf_counter()
        make_folder(args.folder, args.images)
        print(f"  generated {args.images:,} PNGs of {SIZE}x{SIZE}x3 in "
              f"{time.perf_counter() - t:.0f} s (not measured)", flush=True)
    sampler.start()
    t = time.perf_counter()
    import tensorflow as tf  # noqa: F401

    rec.stage("import tensorflow, keras_distill", t)
    try:
        summary = run(args, rec)
    finally:
        sampler.stop()
        if tmp is not None:
            tmp.cleanup()
    own, children = peaks_mib()
    tree = max(sampler.peak_kib / 1024, own)
    print()
    print(rec.table())
    print()
    print(f"Peak memory, streaming {summary['images']:,} images of {SIZE}x{SIZE}x3: "
          f"{tree:.0f} MiB (this process and its children at once, sampled every "
          f"{sampler.interval * 1000:.0f} ms). Upper bound: {own:.0f} MiB (ru_maxrss) + "
          f"{children:.0f} MiB (largest child).")
    print(f"The old in-memory loader, projected: the float32 array alone "
          f"{summary['float32_mib']:,.0f} MiB; it held the batches and their concatenation at "
          f"once, {2 * summary['float32_mib']:,.0f} MiB, before training started.")
    ok = tree <= TARGET_MIB
    print(f"Target: sampled peak within {TARGET_MIB} MiB: {'PASS' if ok else 'FAIL'}.")
    return 0 if ok else 1
