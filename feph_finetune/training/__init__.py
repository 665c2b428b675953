"""Building and fine-tuning models: the only part of the core that imports TensorFlow."""
