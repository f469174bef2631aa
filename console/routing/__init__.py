"""Routing that is learned offline: the difficulty model and its calibration on judged traffic."""
