"""Offline training: the PCA family and PyTorch autoencoders, exported into the registry."""
