"""Deprecated name of :mod:`keras_distill.verify` (the runtimes that run exported artifacts).

``from keras_distill.evaluate import evaluate_artifact`` keeps working; import from
``keras_distill.verify`` instead. (The ``keras-distill evaluate`` command is unchanged.)
"""

import warnings

from keras_distill.verify import *

warnings.warn("keras_distill.evaluate is now keras_distill.verify; import from there.",
              DeprecationWarning, stacklevel=2)
