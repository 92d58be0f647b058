"""Evaluation metrics (FID, KID) with the FID Inception feature network."""
