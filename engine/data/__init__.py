"""Data: decoding images, scanning folders, datasets, transforms, preprocessing, the RAM cache of decoded images."""
