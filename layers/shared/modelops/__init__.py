"""modelops shared library: what every stage needs (registry, spec, events, drift, capture).

Nothing here imports TensorFlow; the `modelops.ml` subpackage does, and only the training
job and the convert stage import it.
"""

__version__ = "0.1.0"
