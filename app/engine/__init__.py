"""The serving engine: registry of meta-learners, worker pool, state cache, input decoding."""
