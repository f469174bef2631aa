"""Quality of the served answers: the sampled judge, golden sets, drift and the prompt registry."""
