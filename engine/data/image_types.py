"""The file types Thaw reads as images, in a module of their own: listing a folder's images (the scan's layout, the
relabel command) must not import torch, which decoding them (engine/data/images.py) does."""

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".npy"}
)
