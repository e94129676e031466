"""Measures: pure functions of a trained model and its data, below every attack and stage.

`gradients` (the input gradient of a loss: the forward and backward every attack step costs), `stats`
(intervals, paired tests, pooling over seeds, Holm, power; numpy only), `interpolation` (Figure 2 between
training pairs), `pointwise` (per test point: calibration, margins, gradient norms, random sign noise).
"""
