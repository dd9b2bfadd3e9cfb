"""Task samplers: sinusoid regression and Omniglot N-way K-shot classification."""
