"""Student search under a device budget: the most accurate student that fits a target.

:func:`search` answers "what is the most accurate model that fits this device?" for a trained
teacher and the user's data, on the user's machine:

1. **Enumerate** students (:func:`candidates`): the preset families (``student_cnn`` over width,
   depth and input resolution for images; ``student_mlp`` over width and depth for vectors)
   and ``keras_distill.students.shrink`` of the teacher over width.
2. **Measure before training.** Each candidate, untrained, is converted to int8 at batch 1 and
   run in TensorFlow Lite Micro, which gives its exact int8 bytes and tensor arena (they depend
   on shapes, not on weight values); one whose parameters alone exceed the flash is dropped
   without a conversion. A candidate that does not fit the target
   (:func:`keras_distill.targets.fit`) is never trained.
3. **Proxy distillation.** Each survivor is distilled for ``proxy_epochs`` and scored on the
   validation data; the Pareto front of validation accuracy against RAM (arena) and flash
   (model bytes) is kept.
4. **Final distillation** of every front member for ``epochs`` (cosine learning rate); the
   best on validation is exported (``keras_distill.export`` with the target and, when given,
   ``max_accuracy_drop``) and checked again: the model that is flashed (the int8 micro
   artifact, or the model the accuracy budget keeps float layers in) must fit the target, else
   the next best is exported. A model that does not fit is never left as the result.

Every step is recorded in ``search.json`` in ``out_dir`` as it finishes: a rerun with the same
settings resumes, and a finished candidate is never trained again. ``search.md`` holds the
table of candidates and ``front.png`` the front with the target's limits.

Example:
    >>> result = search(teacher, data, "cortex-m4-256k", out_dir="search")  # doctest: +SKIP
    >>> result.chosen.name, result.chosen.final_accuracy  # doctest: +SKIP
    ('student_cnn-w4-d2-r1', 0.9703)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time

import numpy as np

from keras_distill import io

#: The search's record and outputs in ``out_dir``.
STATE, TABLE, PLOT, MODELS, EXPORTED = "search.json", "search.md", "front.png", "candidates", \
    "exported"
#: The default grid of each family.
WIDTHS = {"student_cnn": (2, 4, 8, 16), "student_mlp": (8, 16, 32, 64, 128),
          "shrink": (0.125, 0.25, 0.5)}
DEPTHS = {"student_cnn": (1, 2, 3), "student_mlp": (1, 2), "shrink": (None,)}
RESOLUTIONS = (1, 2)
#: Random inputs that calibrate the untrained candidates' int8 conversions (sizes only).
SIZE_SAMPLES = 32


@dataclasses.dataclass(frozen=True)
class Spec:
    """One student of the search space.

    Attributes:
        family: ``"student_cnn"``, ``"student_mlp"`` or ``"shrink"`` (of the teacher).
        width: filters of the first conv layer (``student_cnn``), hidden units
            (``student_mlp``) or the teacher's width factor (``shrink``).
        depth: conv layers (``student_cnn``: 2 is the preset), hidden layers
            (``student_mlp``), ``None`` for ``shrink``.
        resolution: images are average-pooled by this factor first (1: full resolution).
    """

    family: str
    width: float
    depth: int | None = None
    resolution: int = 1

    @property
    def name(self):
        depth = "" if self.depth is None else f"-d{self.depth}"
        width = f"{self.width:g}"
        return f"{self.family}-w{width}{depth}-r{self.resolution}"

    def build(self, input_shape, num_classes, teacher=None):
        """The untrained Keras model of this spec."""
        import keras

        if self.family == "shrink":
            from keras_distill.students import shrink

            return shrink(teacher, self.width, name=_identifier(self.name))
        inputs = keras.Input(shape=tuple(input_shape), name="image")
        x = inputs
        if self.resolution > 1:
            x = keras.layers.AveragePooling2D(self.resolution, name="downsample")(x)
        if self.family == "student_cnn":
            x = _cnn(x, int(self.width), int(self.depth))
        elif self.family == "student_mlp":
            x = keras.layers.Flatten(name="flatten")(x)
            for i in range(int(self.depth)):
                x = keras.layers.Dense(int(self.width), activation="relu",
                                       name="hidden" if i == 0 else f"hidden{i + 1}")(x)
        else:
            raise ValueError(f"Unknown family {self.family!r}; expected one of {tuple(WIDTHS)}.")
        outputs = keras.layers.Dense(num_classes, name="logits")(x)
        return keras.Model(inputs, outputs, name=_identifier(self.name))


def _cnn(x, width, depth):
    """``presets.student_cnn``'s layers at ``depth=2`` (conv1, pool, conv2, flatten); depth 1
    drops conv2, depth 3 adds conv3 (4x width) after conv2."""
    import keras

    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
    if min(x.shape[1], x.shape[2]) >= 2:
        x = keras.layers.MaxPooling2D(2, name="pool")(x)
    for i in range(1, depth):
        x = keras.layers.Conv2D(width * 2 ** i, 3, padding="same", activation="relu",
                                name=f"conv{i + 1}")(x)
    return keras.layers.Flatten(name="flatten")(x)


def _identifier(name):
    return name.replace("-", "_").replace(".", "p")


def candidates(input_shape, *, teacher=None, families="auto", widths=None, depths=None,
               resolutions=RESOLUTIONS):
    """The specs of the search space, smallest widths first.

    Args:
        input_shape: the input shape without the batch axis.
        teacher: the teacher (for the ``shrink`` family; without it the family is left out).
        families: ``"auto"`` (images: ``student_cnn`` and ``shrink``; vectors:
            ``student_mlp`` and ``shrink``) or a list of family names.
        widths, depths: ``{family: values}`` replacing the defaults (:data:`WIDTHS`,
            :data:`DEPTHS`) for the families given.
        resolutions: pooling factors tried for images (each must divide height and width).
    """
    image = len(input_shape) == 3
    if families == "auto":
        families = ["student_cnn" if image else "student_mlp"] + (["shrink"] if teacher
                                                                  is not None else [])
    unknown = [f for f in families if f not in WIDTHS]
    if unknown:
        raise ValueError(f"Unknown families {unknown}; expected some of {tuple(WIDTHS)}.")
    if "shrink" in families and teacher is None:
        raise ValueError("The 'shrink' family needs the teacher.")
    widths, depths = {**WIDTHS, **(widths or {})}, {**DEPTHS, **(depths or {})}
    specs = []
    for family in families:
        factors = [r for r in resolutions if image and family != "shrink" and r > 1 and
                   input_shape[0] % r == 0 and input_shape[1] % r == 0 and
                   input_shape[0] // r >= 2 and input_shape[1] // r >= 2]
        for width in widths[family]:
            for depth in depths[family]:
                for r in [1, *factors]:
                    specs.append(Spec(family, width, depth, r))
    return specs


@dataclasses.dataclass
class Candidate:
    """A spec and what was measured of it (``None``: not measured)."""

    spec: Spec
    params: int | None = None
    int8_bytes: int | None = None
    arena: int | None = None
    macs: int | None = None
    fit: dict | None = None
    status: str = "new"  # new, too_big, failed, proxy, final
    error: str | None = None
    proxy_accuracy: float | None = None
    final_accuracy: float | None = None
    on_front: bool = False
    model_file: str | None = None
    seconds: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self):
        return self.spec.name

    @property
    def fits(self):
        return bool(self.fit and self.fit["fits"])

    def to_dict(self):
        record = dataclasses.asdict(self)
        record["spec"] = dataclasses.asdict(self.spec)
        record["name"] = self.name
        return record

    @classmethod
    def from_dict(cls, record):
        record = {k: v for k, v in record.items() if k != "name"}
        return cls(spec=Spec(**record.pop("spec")), **record)


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` found.

    Attributes:
        candidates: every :class:`Candidate`, in search order.
        chosen: the exported candidate (``None``: nothing fits the target).
        export: the chosen model's ``ExportReport`` (``None`` when nothing fits).
        deployed: what is flashed: ``{"file", "mode", "model_bytes", "arena", "fit",
            "within_budget"}`` (the int8 C source, or the one of the model the accuracy
            budget keeps float layers in).
        out_dir: the folder of ``search.json``, ``search.md``, ``front.png``, ``exported/``.
        seconds: wall time of the search (this call).
    """

    candidates: list
    chosen: Candidate | None
    export: object
    deployed: dict | None
    out_dir: str
    target: str
    seconds: float

    @property
    def front(self):
        return [c for c in self.candidates if c.on_front]

    def table(self):
        """The candidates as a Markdown table."""
        lines = [("| candidate | params | int8 bytes | arena | MACs | fits | proxy acc | "
                 "final acc | status |"), "|---|---|---|---|---|---|---|---|---|"]
        for c in self.candidates:
            def num(v):
                return "" if v is None else f"{v:,}"

            def acc(v):
                return "" if v is None else f"{v:.4f}"
            mark = " (chosen)" if self.chosen is not None and c.name == self.chosen.name \
                else (" (front)" if c.on_front else "")
            lines.append(f"| {c.name}{mark} | {num(c.params)} | {num(c.int8_bytes)} | "
                         f"{num(c.arena)} | {num(c.macs)} | "
                         f"{'' if c.fit is None else ('yes' if c.fits else 'no')} | "
                         f"{acc(c.proxy_accuracy)} | {acc(c.final_accuracy)} | {c.status} |")
        return "\n".join(lines)


def search(teacher, data, target, *, out_dir="search", max_accuracy_drop=None,
           families="auto", widths=None, depths=None, resolutions=RESOLUTIONS,
           proxy_epochs=10, epochs=30, max_final=4, temperature=4.0, alpha=0.1,
           learning_rate=3e-3, batch_size=64, seed=0, formats=("tflite", "micro"),
           context=None, log=None):
    """Find, distill and export the most accurate student that fits ``target``.

    Args:
        teacher: the trained teacher (a multiclass classifier with logits).
        data: a ``keras_distill.data.Splits`` (``x_train`` ... ``y_test`` in memory).
        target: a name of ``keras_distill.targets.TARGETS`` or a ``Target``.
        out_dir: the folder of the search's record, tables, plot and the chosen export.
        max_accuracy_drop: passed to ``export``: the most the int8 model may lose against
            the float student on validation (0.01: one point); over it, layers stay float
            and that model is what must fit.
        families, widths, depths, resolutions: the search space (:func:`candidates`).
        proxy_epochs: distillation epochs of every candidate that fits (the proxy).
        epochs: distillation epochs of the front's members: the ``max_final`` (4) most
            accurate by proxy.
        temperature, alpha, learning_rate, batch_size: of the distillation.
        seed: seed of every candidate's initialization and shuffling.
        formats: of the chosen model's export (``"micro"`` is always included: the fit is
            measured on it).
        context: more settings a rerun must share to resume (e.g. how the teacher was made).
        log: called with each progress line (default ``print``).

    Returns:
        A :class:`SearchResult`.

    Raises:
        ValueError: a task other than multiclass, unknown families, or ``out_dir`` holding a
            search with other settings.
    """
    from keras_distill import targets

    log = log or (lambda message: print(message, flush=True))
    started = time.perf_counter()
    target = targets.get(target)
    if max_accuracy_drop is not None and "tflite" not in formats:
        raise ValueError("max_accuracy_drop is a budget of the int8 TFLite model: add 'tflite' "
                         "to formats, or drop max_accuracy_drop.")
    if getattr(data, "task", "multiclass") != "multiclass":
        raise ValueError(f"search supports multiclass data; this data's task is {data.task}.")
    out_dir = io.output_folder(out_dir)
    input_shape = tuple(np.asarray(data.x_train[:1]).shape[1:])
    num_classes = int(teacher.output_shape[-1])
    specs = candidates(input_shape, teacher=teacher, families=families, widths=widths,
                       depths=depths, resolutions=resolutions)
    settings = {"target": dataclasses.asdict(target), "proxy_epochs": proxy_epochs,
                "epochs": epochs, "temperature": temperature, "alpha": alpha,
                "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                "max_accuracy_drop": max_accuracy_drop, "data": _data_key(data),
                "teacher": _teacher_key(teacher), "context": context}
    state = _State(out_dir, settings, specs, log)
    rep = np.random.default_rng(seed).uniform(
        float(np.min(data.x_train[:256])), float(np.max(data.x_train[:256])),
        (SIZE_SAMPLES, *input_shape)).astype("float32")
    total = len(state.candidates)
    for i, c in enumerate(state.candidates, 1):
        if c.status in ("new", "failed"):  # a failure is tried again on a rerun
            _measure(c, input_shape, num_classes, teacher, target, rep)
            state.save()
        if c.status == "measured":
            t = time.perf_counter()
            model = c.spec.build(input_shape, num_classes, teacher)
            c.proxy_accuracy = _distill(teacher, model, data, proxy_epochs, seed, temperature,
                                        alpha, learning_rate, batch_size)
            c.seconds["proxy"] = round(time.perf_counter() - t, 2)
            c.status = "proxy"
            state.save()
        _mark_front(state.candidates)
        log(f"[{i}/{total}] {c.name}: {_progress(c)}; front: "
            + ", ".join(f"{f.name} ({f.proxy_accuracy:.3f})" for f in state.candidates
                        if f.on_front))
    front = sorted([c for c in state.candidates if c.on_front],
                   key=lambda c: -c.proxy_accuracy)[:max_final]
    for c in front:
        if c.status == "proxy" or not _model_exists(out_dir, c):
            t = time.perf_counter()
            log(f"Final distillation of {c.name} ({epochs} epochs).")
            model = c.spec.build(input_shape, num_classes, teacher)
            c.final_accuracy = _distill(teacher, model, data, epochs, seed, temperature, alpha,
                                        learning_rate, batch_size, cosine=True)
            c.model_file = os.path.join(MODELS, f"{_identifier(c.name)}.keras")
            os.makedirs(os.path.join(out_dir, MODELS), exist_ok=True)
            io.save_model(model, os.path.join(out_dir, c.model_file))
            c.seconds["final"] = round(time.perf_counter() - t, 2)
            c.status = "final"
            state.save()
    chosen, report, deployed = _export_best(state, front, data, target, max_accuracy_drop,
                                            formats, log)
    state.chosen = None if chosen is None else chosen.name
    state.deployed = deployed
    state.save()
    result = SearchResult(state.candidates, chosen, report, deployed, out_dir, target.name,
                          round(time.perf_counter() - started, 2))
    _write_outputs(result, target)
    return result


# ---- the steps ------------------------------------------------------------------------


def _measure(c, input_shape, num_classes, teacher, target, rep):
    """int8 bytes, arena and MACs of the untrained candidate, and whether they fit."""
    from keras_distill import targets

    t = time.perf_counter()
    try:
        model = c.spec.build(input_shape, num_classes, teacher)
    except ValueError as exc:  # a spec the input cannot take (too small to pool)
        c.status, c.error = "failed", f"{type(exc).__name__}: {exc}"
        return
    c.params = int(model.count_params())
    # distinct random values: the converter shares identical constant buffers (the zero
    # biases of an untrained model), which would make it smaller than the trained one
    rng = np.random.default_rng(0)
    model.set_weights([(w + np.abs(rng.normal(0, 1e-3, np.shape(w)))).astype(w.dtype)
                       for w in model.get_weights()])
    if target.flash is not None and c.params > target.flash:  # int8: a byte per weight at least
        c.status = "too_big"
        c.fit = {"fits": False, "reason": f"{c.params:,} parameters exceed the flash"}
        return
    for attempt in range(2):  # once more: a TFLM probe process has died on a sound model
        try:
            micro = _micro_artifact(model, rep)
            break
        except Exception as exc:  # noqa: BLE001 - one candidate that does not convert
            c.status, c.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        return
    c.status, c.error = "new", None
    c.int8_bytes, c.arena = micro["model_bytes"], micro["arena_size"]
    c.macs = micro["macs"]
    c.fit = targets.fit(micro, target)
    c.status = "measured" if c.fit["fits"] else "too_big"
    c.seconds["measure"] = round(time.perf_counter() - t, 2)


def _micro_artifact(model, rep):
    """``{"model_bytes", "arena_size", "macs", "ops"}`` of ``model``'s micro artifact."""
    from keras_distill.export import export

    with tempfile.TemporaryDirectory(prefix="keras_distill_search_") as tmp:
        report = export(model, tmp, formats=("micro",), quantization=("int8",),
                        representative_data=rep, write_report=False)
    micro = report.get("micro", "int8")
    if micro is None or micro.status == "failed":
        raise RuntimeError(micro.error if micro is not None else "no micro artifact")
    return {"model_bytes": micro.size_bytes, "arena_size": micro.details["arena"]["arena_size"],
            "macs": micro.details.get("macs"), "ops": micro.details.get("ops", [])}


def _distill(teacher, student, data, epochs, seed, temperature, alpha, learning_rate,
             batch_size, *, cosine=False):
    """Distill ``student`` from ``teacher``; its validation accuracy."""
    import keras

    from keras_distill import Distiller

    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(data.x_train) / batch_size)) * epochs
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps) if cosine else \
        learning_rate
    distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer=keras.optimizers.Adam(rate))
    distiller.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    x = data.x_val  # called, not predict(): no retracing per candidate; a lazy array's
    # slices are read one at a time
    predicted = np.concatenate([np.argmax(np.asarray(student(np.asarray(x[i:i + 1024]),
                                                             training=False)), -1)
                                for i in range(0, len(x), 1024)])
    return float(np.mean(predicted == np.asarray(data.y_val).reshape(-1)))


def _mark_front(candidates):
    """``on_front``: fits, and no other fitting candidate is at least as accurate with no more
    RAM and no more flash (and better in one)."""
    scored = [c for c in candidates if c.fits and c.proxy_accuracy is not None]
    for c in candidates:
        c.on_front = c in scored and not any(
            d is not c and d.proxy_accuracy >= c.proxy_accuracy and d.arena <= c.arena and
            d.int8_bytes <= c.int8_bytes and (d.proxy_accuracy > c.proxy_accuracy or
                                              d.arena < c.arena or d.int8_bytes < c.int8_bytes)
            for d in scored)


def _export_best(state, front, data, target, max_accuracy_drop, formats, log):
    """Export the front's best final model whose flashed model fits (and holds the accuracy
    budget) once exported; the others are tried in turn. ``(chosen, report, deployed)``,
    ``(None, None, None)`` when none does: then no export is left."""
    from keras_distill import targets
    from keras_distill.export import export

    formats = tuple(dict.fromkeys([*formats, "micro"]))
    folder = os.path.join(state.out_dir, EXPORTED)
    for c in sorted(front, key=lambda c: (-c.final_accuracy, c.arena + c.int8_bytes)):
        model = io.load_model(os.path.join(state.out_dir, c.model_file))
        shutil.rmtree(folder, ignore_errors=True)
        log(f"Exporting {c.name} (validation accuracy {c.final_accuracy:.4f}).")
        try:
            report = export(model, folder, name="student", formats=formats,
                            quantization=("float32", "int8"),
                            representative_data=data.x_train,
                            eval_data=(data.x_test, data.y_test), target=target,
                            max_accuracy_drop=max_accuracy_drop,
                            budget_data=None if max_accuracy_drop is None else
                            (data.x_val, data.y_val))
        except Exception as exc:  # noqa: BLE001 - the next candidate may export
            report, why = None, f"its export failed: {type(exc).__name__}: {exc}"
        deployed = None if report is None else _deployed(report, target)
        if report is None:
            pass
        elif deployed is None:
            why = "no micro artifact runs in TFLite Micro"
        elif not deployed["fit"]["fits"]:
            why = f"it does not fit as exported ({targets.describe(deployed['fit'])})"
        elif deployed["within_budget"] is False:
            why = (f"no int8 model of it keeps the accuracy within {max_accuracy_drop:g} "
                   "(see its report.md)")
        else:
            return c, report, deployed
        log(f"{c.name}: {why}; trying the next.")
        c.status, c.error = "final", why
        shutil.rmtree(folder, ignore_errors=True)  # never leave a model that does not fit
    return None, None, None


def _deployed(report, target):
    """What is flashed: the int8 micro artifact, or, when the accuracy budget chose another
    model (float layers kept, or int16x8), that model's micro artifact (``None``: no micro
    artifact was written)."""
    budget = (report.get("tflite", "int8").details.get("budget")
              if report.get("tflite", "int8") is not None else None)
    mode = "int8" if budget is None else budget["mode"]
    micro = report.get("micro", mode)
    if micro is None or not micro.written:
        return None
    return {"file": micro.path, "mode": mode, "model_bytes": micro.size_bytes,
            "arena": micro.details["arena"]["arena_size"],
            "arena_estimated": bool(micro.details["arena"].get("estimated")),
            "fit": micro.details["target"],
            "within_budget": None if budget is None else budget["within_budget"]}


def _model_exists(out_dir, c):
    return c.model_file is not None and os.path.isfile(os.path.join(out_dir, c.model_file))


def _progress(c):
    if c.status in ("failed",):
        return f"failed ({c.error})"
    size = (f"{c.params:,} params" + ("" if c.int8_bytes is None else
                                      f", int8 {c.int8_bytes:,} B, arena {c.arena:,} B"))
    if c.status == "too_big":
        return f"{size}: does not fit, not trained"
    return f"{size}: validation accuracy {c.proxy_accuracy:.4f} after the proxy"


def _data_key(data):
    x = np.asarray(data.x_train[:64], np.float64)
    return {"name": getattr(data, "name", None), "n_train": len(data.x_train),
            "n_val": len(data.x_val), "checksum": round(float(x.sum()), 6)}


def _teacher_key(teacher):
    weights = teacher.get_weights()
    return {"name": teacher.name, "params": int(teacher.count_params()),
            "checksum": round(float(sum(np.asarray(w, np.float64).sum() for w in weights)),
                              4)}


class _State:
    """``search.json``: the settings and every candidate, written after each step."""

    def __init__(self, out_dir, settings, specs, log):
        self.out_dir, self.settings = out_dir, settings
        self.chosen = self.deployed = None
        path = os.path.join(out_dir, STATE)
        by_name = {}
        if os.path.isfile(path):
            with open(path) as f:
                then = json.load(f)
            if then.get("settings") != json.loads(json.dumps(settings)):
                raise ValueError(f"{path} holds a search with other settings (target, epochs, "
                                 f"data or teacher); use another out_dir, or delete it to "
                                 f"start over.")
            by_name = {r["name"]: Candidate.from_dict(r) for r in then["candidates"]}
            done = sum(c.status != "new" for c in by_name.values())
            log(f"Resuming the search in {out_dir}: {done} candidates already measured.")
        self.candidates = [by_name.get(s.name) or Candidate(s) for s in specs]

    def save(self):
        record = {"settings": self.settings,
                  "candidates": [c.to_dict() for c in self.candidates],
                  "chosen": self.chosen, "deployed": self.deployed}
        io.write_files(self.out_dir, {STATE: (json.dumps(record, indent=2) + "\n").encode()})


def _write_outputs(result, target):
    """``search.md`` and ``front.png``."""
    lines = [f"# Student search for {target.name}", "",
             (f"{target.description}: RAM {_limit(target.ram)}, flash {_limit(target.flash)} "
             f"({target.source})."), ""]
    if result.chosen is None:
        lines.append("**No candidate fits the target.**")
    else:
        d = result.deployed
        lines.append(f"**Chosen: {result.chosen.name}**, validation accuracy "
                     f"{result.chosen.final_accuracy:.4f}; flashed as {d['file']} ({d['mode']}, "
                     f"{d['model_bytes']:,} bytes, arena {d['arena']:,} bytes), exported to "
                     f"{EXPORTED}/.")
    lines += ["", result.table(), "", f"Search time: {result.seconds:.1f} s.", ""]
    io.write_files(result.out_dir, {TABLE: "\n".join(lines).encode()})
    from keras_distill.report import plot_search_front

    plot_search_front(result.candidates, target, os.path.join(result.out_dir, PLOT),
                      chosen=None if result.chosen is None else result.chosen.name)


def _limit(value):
    return "no limit" if value is None else f"{value:,} bytes"
