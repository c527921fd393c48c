"""Domain pre-training: a torchvision backbone continued with a self-supervised objective on the user's own
unlabeled images (lightly's losses, heads and augmentations), written as a weights file any recipe can start from."""
