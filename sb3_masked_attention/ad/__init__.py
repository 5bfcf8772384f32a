"""Algorithm Distillation (Laskin et al. 2022) on Dark Room: learning histories, the causal transformer
that distils them, and in-context evaluation with a key/value cache."""
