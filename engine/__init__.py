"""Thaw's engine: transfer learning with torchvision models. Plain Python + torch; never imports Qt.

Where things happen:
- freezing and BatchNorm modes: engine/freezing.py
- the layer tree (what the GUI shows): engine/layer_tree.py
- named stages per architecture: engine/stages.py
- parameter groups and learning-rate presets: engine/groups.py
- the training loop and its events: engine/trainer.py, engine/events.py
- a whole run as data: engine/recipe.py (strategies as presets: engine/presets.py)
"""

__version__ = "0.1.0"
