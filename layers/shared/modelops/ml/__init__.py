"""TensorFlow-using code, run inside training jobs and by the convert stage (never by the other Lambdas).

- :mod:`~modelops.ml.job`: the training container's contract (SageMaker's ``SM_*`` environment,
  hyperparameters, the dataset in the channel, the failure file, SIGTERM): one job, start to exit status.
- :mod:`~modelops.ml.trainer`: fit, evaluate and export one model.
- :mod:`~modelops.ml.search`: a search run inside one job (Optuna, parallel worker processes).
- :mod:`~modelops.ml.trials`: one trial of a search run outside the job (SageMaker tuning, Batch array).
- :mod:`~modelops.ml.convert`: SavedModel to LiteRT, for the convert stage.
"""
