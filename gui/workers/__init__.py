"""Work off the GUI thread: the training worker and its controller, scanning, inference, importing torch."""
