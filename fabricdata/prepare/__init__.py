"""Turning the stored labels into training data: statistics, splits, augmentation, balancing, validation, the
Florence-2 export and the synthetic fabric generator."""
