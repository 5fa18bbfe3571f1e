"""Train a small student on digits and export it for TensorFlow Lite Micro.

Writes ``<name>_model_data.cc`` / ``.h`` (the int8 model as a C array, batch size 1) and
prints the measured tensor arena to allocate on the device.

    python examples/micro_export.py [OUT_DIR]
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from keras_distill.data import load_digits
from keras_distill.export import export
from keras_distill.presets import student_cnn

out_dir = sys.argv[1] if len(sys.argv) > 1 else "exported/micro_example"
data = load_digits()
keras.utils.set_random_seed(0)
student = student_cnn(data.input_shape, data.num_classes)
student.compile(keras.optimizers.Adam(3e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
student.fit(data.x_train, data.y_train, epochs=10, batch_size=32, verbose=0)

report = export(student, out_dir, formats=("micro",), representative_data=data.x_train,
                eval_data=(data.x_test, data.y_test), labels=data.class_names)
micro = report.get("micro")
if not micro.ok:
    sys.exit(f"micro export failed: {micro.error}")
arena = micro.details["arena"]
print(f"files: {', '.join(os.path.join(report.out_dir, f) for f in micro.files)}")
print(f"model: {micro.size_bytes} bytes, int8; TFLM accuracy on the test split "
      f"{micro.metrics['accuracy']:.3f} (Keras {report.keras['accuracy']:.3f})")
print(f"tensor arena: {arena['arena_size']} bytes (measured minimum {arena['min_bytes']} bytes; "
      "64-bit host, an upper bound for a 32-bit MCU)")
print(f"in C++: alignas(16) uint8_t tensor_arena[{micro.details['identifiers']['arena']}];")
