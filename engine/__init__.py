"""Thaw's engine: transfer learning with torchvision models. Plain Python + torch; never imports Qt.

Where things happen:
- freezing and BatchNorm modes: engine/model/freezing.py
- the layer tree (what the GUI shows): engine/model/layer_tree.py
- named stages per architecture: engine/model/stages.py
- parameter groups and learning-rate presets: engine/model/groups.py
- the training loop and its events: engine/train/trainer.py, engine/train/events.py
- a whole run as data: engine/recipe.py (strategies as presets: engine/planning/presets.py)
"""

__version__ = "0.1.0"
