"""Data loaders: Kannada-MNIST, CUB-200-2011, class-per-folder trees, and the tensor helpers
they share (:mod:`explainers.datasets.common`)."""
