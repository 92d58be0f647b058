"""Figures and tidy data from training run directories (see plots.run_data for the reader)."""
