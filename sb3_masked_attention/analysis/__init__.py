"""Plots and analysis of attention (matplotlib is imported lazily, never at package import)."""
