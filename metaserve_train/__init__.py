"""Metaserve's training package: meta-training a team's own meta-learner from labelled data.

Installed with the ``train`` extra. It builds on the serving package (``app.meta``: learners,
codecs, backbones) and the server never imports it.
"""
