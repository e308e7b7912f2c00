"""TensorFlow-using code: imported only by the training job and the convert stage."""
