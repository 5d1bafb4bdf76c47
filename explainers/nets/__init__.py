"""Networks: the classifiers ``D`` (MnistNet, torchvision models), the generators ``G`` (VAE,
WGAN) and the checkpoint registry that rebuilds any of them from a file."""
