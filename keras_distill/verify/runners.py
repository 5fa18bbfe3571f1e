"""The runtimes, one sample at a time: LiteRT (``.tflite``), ONNX Runtime (``.onnx``) and the
TensorFlow Lite Micro interpreter (a ``.tflite`` flatbuffer read back from a micro source).

A runner takes one float sample (a batch of 1) and returns float outputs: integer inputs are
quantized with the model's recorded scale and zero point (and clipped to the integer range),
integer outputs dequantized, each output with its own scale. A model with one output gives an
array; a model with several gives ``{name: array}``, named by the TFLite signature's output
names (``export`` names them as the Keras outputs; the flatbuffer's own output order is not the
Keras order) or the ONNX graph's output names (:attr:`_Runner.output_names`).

Example:
    >>> runner = LiteRTRunner(open("exported/student_int8.tflite", "rb").read())
    ... # doctest: +SKIP
    >>> outputs, seconds = run_samples(runner, x_test)  # doctest: +SKIP
"""

from __future__ import annotations

import time

import numpy as np

from keras_distill.data.lazy import is_lazy


def quantize(x, scale, zero_point, dtype):
    """Float to integer: ``round(x / scale) + zero_point``, clipped to ``dtype``."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """Integer to float: ``(q - zero_point) * scale``."""
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)


def _integer_quant(dtype, scale, zero_point):
    if np.issubdtype(np.dtype(dtype), np.integer) and scale:
        return float(scale), int(zero_point)
    return None


class _Runner:
    """Runs one sample (batch of 1) at a time; float in, float out.

    Attributes:
        output_names: the name of each output, in the order the runner reads them.
        output_dtypes: ``{name: dtype}`` of the artifact's output tensors.
        input_dtype, output_dtype: the input's and the (first) output's tensor dtype.
        input_quant, output_quant: ``(scale, zero_point)`` of an integer input / (first)
            output, else ``None``.
    """

    input_dtype = output_dtype = "float32"
    input_quant = output_quant = None  # (scale, zero_point) for integer tensors
    output_names = ()
    _output_quants = ()

    def _set_outputs(self, names, dtypes, quants):
        self.output_names = list(names)
        self.output_dtypes = dict(zip(self.output_names, dtypes))
        self._output_quants = list(quants)
        self.output_dtype, self.output_quant = dtypes[0], quants[0]

    def _to_input(self, x1):
        if self.input_quant is not None:
            return quantize(x1, *self.input_quant, np.dtype(self.input_dtype))
        return np.asarray(x1, dtype=self.input_dtype)

    def _from_output(self, y1, quant=None):
        if quant is not None:
            return dequantize(y1, *quant)
        return np.asarray(y1, np.float32)

    def _from_outputs(self, raw):
        """One array for one output, else ``{name: array}``; each dequantized with its own
        scale and zero point."""
        values = [self._from_output(r, q) for r, q in zip(raw, self._output_quants)]
        if len(values) == 1:
            return values[0]
        return dict(zip(self.output_names, values))

    def __call__(self, x1):
        raise NotImplementedError


class LiteRTRunner(_Runner):
    """A ``.tflite`` flatbuffer in the LiteRT interpreter (``ai_edge_litert``)."""

    runtime = "litert"

    def __init__(self, model_bytes, *, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        from keras_distill.verify.litert import output_names

        self._interp = Interpreter(model_content=bytes(model_bytes), num_threads=num_threads)
        inp = self._interp.get_input_details()[0]
        if len(self._interp.get_input_details()) != 1:
            raise ValueError("evaluate supports models with one input.")
        if inp["shape"][0] != 1:
            self._interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        outs = self._interp.get_output_details()
        self._in, self._outs = inp["index"], [o["index"] for o in outs]
        self.input_dtype = np.dtype(inp["dtype"]).name
        self.input_quant = _integer_quant(inp["dtype"], *inp["quantization"])
        self._set_outputs(output_names(self._interp),
                          [np.dtype(o["dtype"]).name for o in outs],
                          [_integer_quant(o["dtype"], *o["quantization"]) for o in outs])
        #: the per-sample input shape
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])

    def __call__(self, x1):
        self._interp.set_tensor(self._in, self._to_input(x1))
        self._interp.invoke()
        return self._from_outputs([self._interp.get_tensor(i) for i in self._outs])


class OnnxRunner(_Runner):
    """An ``.onnx`` model in ONNX Runtime (CPU)."""

    runtime = "onnxruntime"

    def __init__(self, model_bytes, *, num_threads=1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = num_threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(bytes(model_bytes), options,
                                             providers=["CPUExecutionProvider"])
        if len(self._session.get_inputs()) != 1:
            raise ValueError("evaluate supports models with one input.")
        self._input = self._session.get_inputs()[0].name
        outs = self._session.get_outputs()
        types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
                 "tensor(int32)": "int32", "tensor(int64)": "int64"}  # (token ids)
        self.input_dtype = types.get(self._session.get_inputs()[0].type, "float32")
        self._set_outputs([o.name for o in outs], [types.get(o.type, "float32") for o in outs],
                          [None] * len(outs))

    def __call__(self, x1):
        raw = self._session.run(self.output_names, {self._input: self._to_input(x1)})
        return self._from_outputs(raw)


class MicroRunner(_Runner):
    """A ``.tflite`` flatbuffer in the TensorFlow Lite Micro interpreter.

    ``arena_size`` must be one that allocates (see ``keras_distill.verify.micro``): the
    tflite-micro package can crash the process on a too-small arena. The outputs are named as
    LiteRT names them (TFLM's output ``i`` is the subgraph's output ``i`` in both).
    """

    runtime = "tflite-micro"

    def __init__(self, model_bytes, *, arena_size):
        from ai_edge_litert.interpreter import Interpreter
        from tflite_micro.python.tflite_micro import runtime

        from keras_distill.verify.litert import output_names

        names = output_names(Interpreter(model_content=bytes(model_bytes)))
        self._interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
        inp = self._interp.get_input_details(0)
        outs = [self._interp.get_output_details(i) for i in range(len(names))]
        self._shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"]).name

        def quant(details):
            params = details["quantization_parameters"]
            if len(params["scales"]) == 0:
                return None
            return _integer_quant(details["dtype"], params["scales"][0],
                                  params["zero_points"][0])

        self.input_quant = quant(inp)
        self._set_outputs(names, [np.dtype(o["dtype"]).name for o in outs],
                          [quant(o) for o in outs])

    def __call__(self, x1):
        self._interp.set_input(self._to_input(x1).reshape(self._shape), 0)
        self._interp.invoke()
        return self._from_outputs([self._interp.get_output(i)
                                   for i in range(len(self.output_names))])


def make_runner(model_bytes, fmt, *, arena_size=None, num_threads=1):
    """The runner for an artifact's bytes: ``fmt`` is ``"tflite"``, ``"onnx"`` or ``"micro"``.

    For ``"micro"`` without ``arena_size`` the arena is measured first (in child processes).
    """
    if fmt == "tflite":
        return LiteRTRunner(model_bytes, num_threads=num_threads)
    if fmt == "onnx":
        return OnnxRunner(model_bytes, num_threads=num_threads)
    if fmt == "micro":
        if arena_size is None:
            from keras_distill.verify.micro import measure_arena

            arena_size = measure_arena(model_bytes).arena_size
        return MicroRunner(model_bytes, arena_size=arena_size)
    raise ValueError(f"Unknown artifact format {fmt!r}; expected 'tflite', 'onnx' or 'micro'.")


def run_samples(runner, x, *, warmup=1):
    """Run ``runner`` on every sample of ``x`` alone.

    Returns:
        ``(outputs, latencies_seconds)``: outputs stacked to ``(N, ...)`` (float32, batch
        dimension of each call removed; ``{name: array}`` for a model of several outputs) and
        one wall time per call (the runner's call only: reading the sample is not timed).
    """
    x = x if is_lazy(x) else np.asarray(x)  # lazy inputs: read a sample at a time
    for i in range(min(warmup, len(x))):
        runner(x[i:i + 1])
    outputs, times = [], []
    for i in range(len(x)):
        sample = x[i:i + 1]  # read (a lazy row: decoded) outside the timed call
        start = time.perf_counter()
        y = runner(sample)
        times.append(time.perf_counter() - start)
        outputs.append(y)
    if outputs and isinstance(outputs[0], dict):
        stacked = {name: np.stack([_sample(o[name]) for o in outputs]) for name in outputs[0]}
        return stacked, np.asarray(times)
    return np.stack([_sample(o) for o in outputs]), np.asarray(times)


def _sample(y):
    """One call's output without its batch dimension of 1."""
    return np.asarray(y, np.float32).reshape(-1, *np.shape(y)[1:])[0]
