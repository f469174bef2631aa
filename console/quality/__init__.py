"""Quality of served answers: the sampled judge, golden sets and their gate, the prompt registry, drift."""
