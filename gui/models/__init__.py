"""Qt item models: thin adapters over the engine's data (the layer tree, parameter groups, the phase being edited)."""
