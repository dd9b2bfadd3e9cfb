"""The meta-learning core: algorithms, backbones, task samplers, training and evaluation.

Nothing in this package knows about HTTP or SQL. The service talks to it through
:class:`app.meta.algorithms.base.MetaLearner` (``adapt`` / ``predict``) and
:mod:`app.meta.checkpoint` (load a shipped meta-learner).
"""
