"""Using a trained model: prediction and what the network looked at."""
