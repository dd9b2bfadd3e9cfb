"""The catalog of meta-learner versions: the database rows every replica and worker follows,
the published files in the registry's artifact store, and the operations on them (publish,
alias, retire, purge, history)."""
