"""Adaptation jobs: the durable queue, running one job, and the runners that take them."""
