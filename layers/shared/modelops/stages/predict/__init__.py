"""predict: POST /models/{name}/predict and the read routes (docs/predict.md).

- ``api``: the Lambda entry's body (``handle``): log keys and cold start, then the lean POST predict
  path or the Powertools resolver.
- ``routes``: the resolver, its catalogue routes and the OpenAPI document.
- ``proxy``: API Gateway proxy events in and out for POST predict.
- ``service``: ``PredictService`` and the container's instance of it.
- ``parse``, ``render``: reading a request, writing an answer.
- ``errors``: errors and their HTTP answers.
- ``telemetry``: EMF metrics and log keys.
- ``serving``: the model cache and LiteRT inference.
- ``settings``: the function's environment.
"""
