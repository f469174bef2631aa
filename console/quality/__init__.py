"""Quality: the sampled judge, golden sets and their gate, the prompt registry, drift."""
