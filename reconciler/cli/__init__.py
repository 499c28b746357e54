"""The command line: argument parsing and presentation only; the work is in reconciler.control."""
