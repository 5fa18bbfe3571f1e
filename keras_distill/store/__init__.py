"""Teacher outputs on disk: computed once, in shards, optionally as top-k.

Running a large teacher over a large dataset is the expensive part of offline distillation.
A store holds its outputs once, keyed to the teacher's weights and the data, so every epoch
(and every later run) reads them instead:

- :func:`write` runs the teacher over arrays (NumPy, memory-mapped or lazy,
  ``keras_distill.data.lazy``); :func:`write_dataset` over a deterministic ``tf.data``
  dataset (:mod:`~keras_distill.store.determinism` says what that means and refuses the rest);
  ``keras-distill label`` (:func:`label`) over a data source with an Apache Beam pipeline
  (:mod:`keras_distill.store.beam`; Beam is imported only when it runs). All three write the same format
  (:mod:`~keras_distill.store.shards`): shards written whole or not at all, so an interrupted
  write resumes where it stopped.
- ``top_k`` keeps the k most likely classes of multiclass outputs in float16 and the rest's
  total probability (:mod:`~keras_distill.store.topk`, where the loss on that
  representation is defined): 44 bytes a sample instead of 4,000 for 1,000 classes at k = 10.
- ``Distiller.fit(..., cache_teacher=True)`` writes and reads a store; ``cache_teacher=<path>``
  reads one written before (by ``keras-distill label``, say).

Example:
    >>> store = write(teacher, x_train, "teacher-store", top_k=5)   # doctest: +SKIP
    >>> distiller.fit(x_train, y_train, cache_teacher="teacher-store")  # doctest: +SKIP
"""

from keras_distill.store.beam import LabelError, label
from keras_distill.store.determinism import NonDeterministicDataset, check
from keras_distill.store.shards import StoredOutputs, StoreError, TeacherStore
from keras_distill.store.training import (
    check_dataset,
    check_pairing,
    check_teacher,
    open_store,
    pair_dataset,
)
from keras_distill.store.writer import (
    data_fingerprint,
    store_key,
    teacher_fingerprint,
    write,
    write_cache,
    write_dataset,
)

__all__ = [
    "LabelError", "NonDeterministicDataset", "StoreError", "StoredOutputs", "TeacherStore", "check",
    "check_dataset", "check_pairing", "check_teacher", "data_fingerprint", "label", "open_store", "pair_dataset", "store_key",
    "teacher_fingerprint", "write", "write_cache", "write_dataset",
]
