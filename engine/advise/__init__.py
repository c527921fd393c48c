"""Measured advice before a run: what the user's own images say about the strategy (advisor) and the backbone
(compare-models). Both rest on one probe (probe.py): the frozen backbone's cached features, the fitted head's
cross-validated accuracy on them, and how far the images lie from what the backbone was trained on."""
