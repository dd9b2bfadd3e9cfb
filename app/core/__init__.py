"""Cross-cutting service pieces: settings, problems (errors), logging."""
