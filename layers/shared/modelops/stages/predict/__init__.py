"""predict: POST /models/{name}/predict and the read routes (docs/predict.md)."""
