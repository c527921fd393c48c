"""Models: the zoo, building (backbone + adapter + head), surgery, stages, freezing, the layer tree, groups."""
