"""The imperative shell: each module wraps one outside thing (files, git, registry, Docker)."""
