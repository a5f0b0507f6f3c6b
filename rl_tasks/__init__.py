"""Algorithmic RL environments (Gymnasium) and RNN agents."""
