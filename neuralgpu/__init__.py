"""Neural GPU (K15/P16) and its improved variant (F17): tasks, model, curricula, trainer."""
